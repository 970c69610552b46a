"""Pure: the scaling state machine of an MPI job's worker ranks (no MPI, no scheduler).

Each worker rank is in one `Phase` and is either wanted up or down. Scale requests set the
pool's target and rank reports move phases; after each event `PoolState` returns the
`Action`s that bring the ranks toward the target, which `pool.WorkerPool` carries out:

================  =====================================  =================================
phase             means                                   leaves on
================  =====================================  =================================
``starting``      worker coming up (job start, UNPARK)    "active" report
``active``        worker connected                        `Retire` (wanted down), "parked"
``parking``       worker being retired                    "parked" report, retire refused
``parked``        rank idle, no worker process            `Unpark` (wanted up)
``lost``          rank dead or unable to run a worker     never
================  =====================================  =================================

A rank can be wanted up while ``parking`` (unparked once it reports parked) or down while
``starting`` (retired once it reports active): no request is lost to a rank in transit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from .protocol import RankState


class Phase(str, Enum):
    STARTING = "starting"
    ACTIVE = "active"
    PARKING = "parking"
    PARKED = "parked"
    LOST = "lost"


STABLE = frozenset({Phase.ACTIVE, Phase.PARKED, Phase.LOST})


@dataclass(frozen=True)
class Retire:
    """Retire this rank's worker (the rank then parks and reports "parked")."""

    rank: int


@dataclass(frozen=True)
class Unpark:
    """Send UNPARK to this rank (it starts its worker and reports "active")."""

    rank: int


Action = Retire | Unpark

# picks which of the given active ranks to park first, most preferred first
ParkOrder = Callable[[list[int]], list[int]]


def highest_first(ranks: list[int]) -> list[int]:
    return sorted(ranks, reverse=True)


@dataclass
class RankSlot:
    phase: Phase = Phase.STARTING
    up: bool = True  # whether the pool wants its worker running


@dataclass
class PoolState:
    """The phases and wishes of every worker rank, and the pool's target."""

    ranks: dict[int, RankSlot]
    target: int
    generation: int = 0  # bumped by every scale or park request
    events: list[str] = field(default_factory=list)  # why the target moved since the request

    @classmethod
    def start(cls, worker_ranks: Iterable[int]) -> PoolState:
        """Every rank starting its worker, all wanted up."""
        ranks = {r: RankSlot() for r in worker_ranks}
        return cls(ranks=ranks, target=len(ranks))

    # ------------------------------------------------------------------ queries
    @property
    def limit(self) -> int:
        """Ranks that can run a worker: all, less the lost ones."""
        return sum(s.phase is not Phase.LOST for s in self.ranks.values())

    def in_phase(self, *phases: Phase) -> list[int]:
        return sorted(r for r, s in self.ranks.items() if s.phase in phases)

    @property
    def active(self) -> int:
        return len(self.in_phase(Phase.ACTIVE))

    @property
    def settled(self) -> bool:
        """No rank is on its way up or down."""
        return all(s.phase in STABLE for s in self.ranks.values())

    @property
    def wanted_up(self) -> list[int]:
        return sorted(r for r, s in self.ranks.items() if s.up and s.phase is not Phase.LOST)

    # ------------------------------------------------------------------ requests
    def scale(self, n: int, park_order: ParkOrder = highest_first) -> list[Action]:
        """Aim for ``n`` workers (0 <= n <= `limit`, checked by the caller)."""
        self.target = n
        self._new_request()
        return self._reconcile(park_order)

    def park(self, ranks: Iterable[int]) -> list[Action]:
        """Park these ranks (Adaptive's choice); the target drops by as many."""
        self._new_request()
        for r in ranks:
            slot = self.ranks.get(r)
            if slot is not None and slot.up and slot.phase is not Phase.LOST:
                slot.up = False
                self.target = max(0, self.target - 1)
        return self._reconcile(highest_first)

    def _new_request(self) -> None:
        self.generation += 1
        self.events = []

    # ------------------------------------------------------------------ reports
    def report(self, rank: int, state: RankState, park_order: ParkOrder = highest_first
               ) -> list[Action]:
        """A STATE message from ``rank``."""
        slot = self.ranks.get(rank)
        if slot is None or slot.phase is Phase.LOST:
            return []
        if state is RankState.LOST:
            return self.lost([rank], park_order)
        if state is RankState.ACTIVE:
            if slot.phase is Phase.PARKING:  # cannot happen: parking starts from active
                return []
            slot.phase = Phase.ACTIVE
        elif state is RankState.PARKED:
            if slot.phase in (Phase.ACTIVE, Phase.STARTING) and slot.up:
                # closed by someone else (retire_workers, client.shutdown): accept it
                slot.up = False
                self.target = max(0, self.target - 1)
                self.events.append(f"rank {rank}'s worker was closed outside the pool")
            slot.phase = Phase.PARKED
        return self._reconcile(park_order)

    def lost(self, ranks: Iterable[int], park_order: ParkOrder = highest_first
             ) -> list[Action]:
        """These ranks died or cannot run a worker; a parked rank may take over."""
        for r in ranks:
            slot = self.ranks.get(r)
            if slot is None or slot.phase is Phase.LOST:
                continue
            slot.phase, slot.up = Phase.LOST, False
            self.events.append(f"rank {r} was lost")
        self.target = min(self.target, self.limit)
        return self._reconcile(park_order)

    def retire_refused(self, rank: int) -> list[Action]:
        """The scheduler did not retire this rank's worker (its data had nowhere to go)."""
        slot = self.ranks.get(rank)
        if slot is None or slot.phase is not Phase.PARKING:
            return []
        slot.phase = Phase.ACTIVE
        if not slot.up:
            slot.up = True
            self.target += 1
            self.events.append(f"rank {rank} kept its worker: the scheduler would not retire "
                               "it (data that could not move to another worker)")
        return []

    # ------------------------------------------------------------------ reconcile
    def _reconcile(self, park_order: ParkOrder) -> list[Action]:
        up = self.wanted_up
        if len(up) > self.target:
            self._want_down(up, len(up) - self.target, park_order)
        elif len(up) < self.target:
            self._want_up(self.target - len(up))
        actions: list[Action] = []
        for r, slot in sorted(self.ranks.items()):
            if slot.phase is Phase.ACTIVE and not slot.up:
                slot.phase = Phase.PARKING
                actions.append(Retire(r))
            elif slot.phase is Phase.PARKED and slot.up:
                slot.phase = Phase.STARTING
                actions.append(Unpark(r))
        return actions

    def _want_down(self, up: list[int], count: int, park_order: ParkOrder) -> None:
        """Cheapest first: ranks already parking, then those still starting (no data yet),
        then active ones in ``park_order``."""
        by_phase = {p: [r for r in up if self.ranks[r].phase is p] for p in Phase}
        active = by_phase[Phase.ACTIVE]
        ordered = [r for r in park_order(list(active)) if r in active]
        ordered += [r for r in highest_first(active) if r not in ordered]
        chosen = (highest_first(by_phase[Phase.PARKING]) + highest_first(by_phase[Phase.STARTING])
                  + ordered)[:count]
        for r in chosen:
            self.ranks[r].up = False

    def _want_up(self, count: int) -> None:
        """Cheapest first: ranks still starting (cancel their retirement), then parked ones
        (UNPARK now), then parking ones (UNPARK once parked); lowest rank first."""
        down = [r for r, s in sorted(self.ranks.items()) if not s.up and s.phase is not Phase.LOST]
        rank_of = {Phase.STARTING: 0, Phase.ACTIVE: 0, Phase.PARKED: 1, Phase.PARKING: 2}
        for r in sorted(down, key=lambda r: (rank_of[self.ranks[r].phase], r))[:count]:
            self.ranks[r].up = True

    # ------------------------------------------------------------------ explain
    def shortfall(self, n: int) -> str:
        """Why there are not ``n`` active workers now (empty when there are)."""
        if self.active == n and self.settled:
            return ""
        reasons = []
        starting, parking = self.in_phase(Phase.STARTING), self.in_phase(Phase.PARKING)
        if starting:
            reasons.append(f"rank(s) {_ranks(starting)} still starting")
        if parking:
            reasons.append(f"rank(s) {_ranks(parking)} still parking")
        reasons.extend(self.events)
        if not reasons and self.active != n:
            reasons.append(f"the target is now {self.target}")
        return "; ".join(reasons)


def _ranks(ranks: list[int]) -> str:
    return ", ".join(str(r) for r in ranks)
