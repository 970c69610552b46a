"""The messages ranks exchange over MPI: one tag and one typed payload each."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings
    from .roles import Plan
    from .tls import JobTLS


class Tag(IntEnum):
    WELCOME = 10   # 0 -> rank r: RankHello, first thing, so every rank can see rank 0 die
    HELLO = 11     # rank r -> 0: RankHello
    PLAN = 12      # 0 -> rank r: PlanMessage
    READY = 13     # scheduler -> 0 and the workers: Ready
    STOP = 14      # 0 (or the scheduler, once 0 is gone) -> rank r: Stop
    BYE = 15       # rank r -> 0: Bye
    UNPARK = 16    # scheduler -> worker rank: UnparkRequest
    STATE = 17     # worker rank -> scheduler: StateReport
    LOST = 19      # 0 -> scheduler: Lost (these worker ranks died)
    GO = 20        # 0 -> rank r: Go (Jupyter has bound its port; open Dask's listeners now)
    EXPIRED = 21   # scheduler -> 0: Expired (`dask-mpi-lx serve`: no cluster object is attached)
    PARK = 22      # scheduler -> worker rank: ParkRequest (its data has moved; close the worker)


@dataclass(frozen=True)
class RankHello:
    """Where a rank runs (WELCOME from rank 0, HELLO from the others)."""

    host: str
    pid: int


@dataclass(frozen=True)
class Endpoint:
    """Where the scheduler listens and what it advertises, decided before it starts when
    rank 0 can (it shares the scheduler's host), so the notebook need not wait for it."""

    listen_host: str | None              # None: the scheduler's rank finds its job_ip
    port: int                            # 0: any free port, chosen by the scheduler
    contact: str | None = None           # the address clients use, known in advance
    dashboard: tuple[str, int] | None = None
    dashboard_socket: str | None = None  # the dashboard serves only this owner-only socket
    # behind a hub: the Dask ranks bind no port before Jupyter has bound the one the hub was
    # told (Linux hands a just-closed ephemeral port to the next bind(0), so a Dask listener
    # could take the port batchspawner-singleuser picked); rank 0 then sends GO
    hold_until_go: bool = False
    # serve: the dashboard listens beside the scheduler, on the job's network, and answers
    # only clients presenting the cluster's certificate (`runtime.dashboard_mtls`)
    dashboard_mtls: bool = False


@dataclass(frozen=True)
class Lease:
    """`dask-mpi-lx serve`: the job ends once no cluster object has been attached for
    ``idle`` seconds, or when none attached within ``first_attach`` seconds of the
    scheduler's start (the client finds the address in a file, maybe on a slow NFS)."""

    idle: float
    first_attach: float


@dataclass(frozen=True)
class PlanMessage:
    """Rank 0's plan: roles, keys, settings and the scheduler's endpoint (None: no cluster)."""

    plan: Plan | None
    tls: JobTLS | None
    settings: Settings | None
    job_id: str
    endpoint: Endpoint | None = None
    lease: Lease | None = None  # serve: when the job ends with nobody attached


@dataclass(frozen=True)
class Ready:
    """The scheduler's address and dashboard, or why it failed (``error``)."""

    address: str | None = None
    dashboard: tuple[str, int] | None = None
    workers: int | None = None  # to rank 0: how many workers had registered
    error: str | None = None


@dataclass(frozen=True)
class Stop:
    """End this rank; ``finalize`` is False once a rank of the job died."""

    reason: str
    finalize: bool = True


@dataclass(frozen=True)
class Bye:
    role: str


@dataclass(frozen=True)
class Lost:
    ranks: tuple[int, ...]


@dataclass(frozen=True)
class ParkRequest:
    """The scheduler moved the worker's data away: close the worker through its Nanny."""


@dataclass(frozen=True)
class UnparkRequest:
    """Start the worker again."""


@dataclass(frozen=True)
class Expired:
    """No cluster object has been attached for the lease: the job should end."""

    reason: str


@dataclass(frozen=True)
class Go:
    """Jupyter listens on its port: the Dask ranks may bind theirs."""


class RankState(str, Enum):
    """What a worker rank reports about its worker (STATE)."""

    ACTIVE = "active"  # its worker started and registered with the scheduler
    PARKED = "parked"  # its worker ended; the rank waits for UNPARK
    LOST = "lost"      # it cannot run a worker (failed to start, no scratch space, crashed)


@dataclass(frozen=True)
class StateReport:
    """The STATE message: a worker rank's news, with why when it is lost."""

    state: RankState
    reason: str = ""

    @classmethod
    def parse(cls, payload: Any) -> StateReport:
        if not isinstance(payload, StateReport):
            raise TypeError(f"STATE carries a StateReport, got {type(payload).__name__}")
        return payload
