"""Pure role assignment: which rank runs the scheduler and which run workers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..exceptions import WorldTooSmallError

MIN_WORLD = 3  # rank 0 (notebook or client) + scheduler + one worker
MIN_JOIN_WORLD = 2  # rank 0 (keeper) + one worker, joining a scheduler outside the job


class Role(str, Enum):
    NOTEBOOK = "notebook"    # rank 0 under `dask-mpi-lx launch`
    CLIENT = "client"        # rank 0 in a batch script using MPICluster
    KEEPER = "keeper"        # rank 0 under `dask-mpi-lx serve`: starts and stops the ranks
    SCHEDULER = "scheduler"
    WORKER = "worker"
    IDLE = "idle"            # no cluster (world too small, failed start): waits for the end


@dataclass(frozen=True)
class Plan:
    """Where everything runs; the same on every rank."""

    hosts: tuple[str, ...]          # hosts[r] is rank r's host
    scheduler_rank: int | None      # None: the workers join a scheduler outside the job
    worker_ranks: tuple[int, ...]
    # listeners on an address other hosts reach even when the job has one host (a client
    # or workers of other jobs connect: `dask-mpi-lx serve`, bursting)
    reachable: bool = False
    worker_prefix: str = ""         # worker names: "<prefix>rank-<r>" (unique across jobs)

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def pool_rank(self) -> int:
        """Where worker ranks report (STATE) and whose READY they wait for: the scheduler
        rank, or rank 0 when the scheduler is outside the job."""
        return 0 if self.scheduler_rank is None else self.scheduler_rank

    def role(self, rank: int) -> Role:
        if rank == self.scheduler_rank:
            return Role.SCHEDULER
        if rank in self.worker_ranks:
            return Role.WORKER
        return Role.IDLE

    @property
    def scheduler_shares_rank0_host(self) -> bool:
        return self.scheduler_rank is not None and self.hosts[self.scheduler_rank] == self.hosts[0]

    def worker_name(self, rank: int) -> str:
        return worker_name(rank, self.worker_prefix)

    @property
    def single_host(self) -> bool:
        return len(set(self.hosts)) == 1


def worker_name(rank: int, prefix: str = "") -> str:
    """The Dask worker name of a rank (stable across park/unpark); ``prefix`` tells apart
    the workers of jobs that join another job's scheduler."""
    return f"{prefix}rank-{rank}"


def rank_of_worker(name: str) -> int | None:
    prefix = "rank-"
    if isinstance(name, str) and name.startswith(prefix) and name[len(prefix):].isdigit():
        return int(name[len(prefix):])
    return None


def plan_roles(hosts: list[str] | tuple[str, ...]) -> Plan:
    """Place the scheduler on rank 0's host (the lowest such rank other than 0), so the
    Jupyter server reaches its dashboard on localhost; if rank 0 is alone on its host,
    rank 1 runs it. Every other rank above 0 runs one worker.

    Raises `WorldTooSmallError` below `MIN_WORLD` ranks.
    """
    if len(hosts) < MIN_WORLD:
        raise WorldTooSmallError(len(hosts), MIN_WORLD)
    same_host = [r for r in range(1, len(hosts)) if hosts[r] == hosts[0]]
    scheduler = same_host[0] if same_host else 1
    workers = tuple(r for r in range(1, len(hosts)) if r != scheduler)
    return Plan(hosts=tuple(hosts), scheduler_rank=scheduler, worker_ranks=workers)


def plural_workers(n: int) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


def plan_join(hosts: list[str] | tuple[str, ...], job_id: str) -> Plan:
    """Every rank above 0 runs a worker for a scheduler outside this job; their names carry
    the job id. Raises `WorldTooSmallError` below `MIN_JOIN_WORLD` ranks."""
    if len(hosts) < MIN_JOIN_WORLD:
        raise WorldTooSmallError(len(hosts), MIN_JOIN_WORLD)
    return Plan(hosts=tuple(hosts), scheduler_rank=None, worker_ranks=tuple(range(1, len(hosts))),
                reachable=True, worker_prefix=f"job-{job_id}-")
