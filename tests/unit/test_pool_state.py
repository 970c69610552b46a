"""The pool's state machine against simulated ranks, over every interleaving of short
sequences of scale requests, rank reports, retirements and UNPARK deliveries."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from dask_mpi_lx.runtime.pool_state import Phase, PoolState, Retire, Unpark
from dask_mpi_lx.runtime.protocol import RankState

RANKS = (2, 3, 4)


@dataclass
class FakeRank:
    """A worker rank as dask_ranks.run_worker behaves: start, report active, run until
    closed, report parked, wait for one UNPARK, start again."""

    life: str = "starting"  # starting | running | waiting
    outbox: list[RankState] = field(default_factory=list)  # STATE reports in flight
    unparks: int = 0  # UNPARK messages in flight
    retiring: bool = False  # the scheduler is retiring its worker

    def key(self) -> tuple:
        return (self.life, tuple(self.outbox), self.unparks, self.retiring)


class World:
    """The pool's state plus simulated ranks and the scheduler's pending retirements."""

    def __init__(self) -> None:
        self.pool = PoolState.start(RANKS)
        self.ranks = {r: FakeRank() for r in RANKS}
        self.refused: set[int] = set()

    def clone(self) -> World:
        import copy

        return copy.deepcopy(self)

    def key(self) -> tuple:
        slots = tuple((r, s.phase, s.up) for r, s in sorted(self.pool.ranks.items()))
        return (slots, self.pool.target, tuple(self.ranks[r].key() for r in RANKS))

    def apply(self, actions) -> None:
        for a in actions:
            fake = self.ranks[a.rank]
            if isinstance(a, Unpark):
                fake.unparks += 1
            else:
                assert isinstance(a, Retire)
                assert fake.life == "running" and not fake.retiring, (a, fake)
                fake.retiring = True

    def steps(self, allow_refuse: bool = False) -> list[tuple[str, int]]:
        """Every event that can happen next, other than a new request."""
        out = []
        for r, fake in self.ranks.items():
            if fake.outbox:
                out.append(("deliver", r))
            if fake.life == "starting":
                out.append(("worker-up", r))
            if fake.life == "running" and fake.retiring:
                out.append(("retired", r))
                if allow_refuse:
                    out.append(("refused", r))
            if fake.life == "waiting" and fake.unparks:
                out.append(("unpark", r))
        return out

    def step(self, event: str, r: int) -> None:
        fake = self.ranks[r]
        if event == "deliver":
            self.apply(self.pool.report(r, fake.outbox.pop(0)))
        elif event == "worker-up":
            fake.life = "running"
            fake.outbox.append(RankState.ACTIVE)
        elif event == "retired":
            fake.retiring = False
            fake.life = "waiting"
            fake.outbox.append(RankState.PARKED)
        elif event == "refused":
            fake.retiring = False
            self.apply(self.pool.retire_refused(r))
        elif event == "unpark":
            fake.unparks -= 1
            fake.life = "starting"

    def drain(self) -> None:
        while steps := self.steps():
            self.step(*steps[0])

    def running(self) -> int:
        return sum(f.life == "running" for f in self.ranks.values())

    def check_quiet(self, expected: int) -> None:
        """No request lost, none left over: the pool's view is the ranks' truth."""
        assert self.pool.settled, self.key()
        assert self.running() == expected == self.pool.target == self.pool.active, self.key()
        for r, fake in self.ranks.items():
            phase = self.pool.ranks[r].phase
            assert fake.unparks == 0, self.key()  # an extra UNPARK would unpark it later
            assert (phase is Phase.ACTIVE) == (fake.life == "running"), self.key()
            assert (phase is Phase.PARKED) == (fake.life == "waiting"), self.key()


def explore(requests: tuple[int, ...], allow_refuse: bool = False) -> int:
    """Depth-first over every interleaving; checks each end state. Returns how many
    distinct states it saw."""
    seen: set = set()
    stack = [(World(), 0)]
    while stack:
        world, issued = stack.pop()
        key = (world.key(), issued)
        if key in seen:
            continue
        seen.add(key)
        steps = world.steps(allow_refuse)
        if issued < len(requests):
            nxt = world.clone()
            nxt.apply(nxt.pool.scale(requests[issued]))
            stack.append((nxt, issued + 1))
        elif not steps:
            if allow_refuse:  # a refused retirement keeps a worker: the target says so
                assert world.pool.settled and world.running() == world.pool.target
                assert all(f.unparks == 0 for f in world.ranks.values())
            else:
                world.check_quiet(requests[-1])
        for event, r in steps:
            nxt = world.clone()
            nxt.step(event, r)
            stack.append((nxt, issued))
    return len(seen)


SEQUENCES = [seq for k in (1, 2, 3) for seq in itertools.product((0, 1, 3), repeat=k)]


@pytest.mark.parametrize("requests", SEQUENCES, ids=lambda s: "-".join(map(str, s)))
def test_every_interleaving_reaches_the_last_request(requests):
    assert explore(requests) > 1


@pytest.mark.parametrize("requests", [(1,), (1, 3), (0, 2), (1, 3, 1)],
                         ids=lambda s: "-".join(map(str, s)))
def test_refused_retirements_leave_no_rank_in_transit(requests):
    assert explore(requests, allow_refuse=True) > 1


def settle_start(world: World) -> None:
    for r in RANKS:
        world.step("worker-up", r)
        world.step("deliver", r)


def test_review_race_scale_1_then_3_then_1_before_the_ranks_report():
    """scale(1) -> ranks park -> scale(3) -> scale(1) before the ranks report back."""
    world = World()
    settle_start(world)
    world.apply(world.pool.scale(1))
    assert world.pool.in_phase(Phase.PARKING) == [3, 4]
    world.step("retired", 3)
    world.step("retired", 4)
    world.apply(world.pool.scale(3))      # parked reports still in flight
    world.apply(world.pool.scale(1))
    world.drain()
    world.check_quiet(1)
    assert world.pool.in_phase(Phase.PARKED) == [3, 4]


def test_scale_down_while_starting_retires_once_the_worker_is_up():
    world = World()
    settle_start(world)
    world.apply(world.pool.scale(1))
    world.drain()
    world.apply(world.pool.scale(3))
    world.step("unpark", 3)
    world.step("unpark", 4)
    world.apply(world.pool.scale(1))      # both still starting: nothing to retire yet
    assert not any(f.retiring for f in world.ranks.values())
    world.drain()
    world.check_quiet(1)


def test_lost_rank_is_replaced_by_a_parked_one_and_the_limit_drops():
    world = World()
    settle_start(world)
    world.apply(world.pool.scale(1))
    world.drain()
    (active,) = world.pool.in_phase(Phase.ACTIVE)
    actions = world.pool.lost([active])
    assert [type(a) for a in actions] == [Unpark]
    world.ranks[active].life = "dead"
    world.apply(actions)
    world.drain()
    assert world.pool.limit == 2 and world.pool.active == 1 and world.pool.target == 1
    assert "was lost" in world.pool.events[0]


def test_lost_report_lowers_the_target_to_the_limit():
    pool = PoolState.start(RANKS)
    assert pool.report(4, RankState.LOST) == []
    assert pool.limit == 2 and pool.target == 2
    assert pool.report(4, RankState.ACTIVE) == []  # lost is final
    assert pool.ranks[4].phase is Phase.LOST


def test_worker_closed_outside_the_pool_lowers_the_target():
    world = World()
    settle_start(world)
    world.ranks[3].life = "waiting"           # client.retire_workers closed it
    world.ranks[3].outbox.append(RankState.PARKED)
    world.drain()
    assert world.pool.target == 2 and world.pool.active == 2
    assert "closed outside the pool" in world.pool.shortfall(3)


def test_park_by_name_lowers_the_target_and_retires_those_ranks():
    world = World()
    settle_start(world)
    actions = world.pool.park([3])
    assert actions == [Retire(3)] and world.pool.target == 2
    world.apply(actions)
    world.drain()
    world.check_quiet(2)


def test_scheduler_preference_picks_which_active_rank_parks():
    world = World()
    settle_start(world)
    actions = world.pool.scale(2, park_order=lambda active: [2])
    assert actions == [Retire(2)]


def test_shortfall_names_ranks_in_transit():
    pool = PoolState.start(RANKS)
    assert pool.shortfall(3) == "rank(s) 2, 3, 4 still starting"
    for r in RANKS:
        pool.report(r, RankState.ACTIVE)
    assert pool.shortfall(3) == ""
