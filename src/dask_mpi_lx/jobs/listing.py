"""This user's job clusters, one line each: what ``dask-mpi-lx clusters list`` prints.

Read from the places that hold the truth: the cluster directories (keys, shape, the
scheduler's contact), the batch system (jobs and their states) and the scheduler itself
(workers), over TLS with the cluster's own keys."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import MPILXError
from ..runtime.cluster_dir import ClusterDir
from .batch_system import JobState, batch_system
from .spec import job_spec
from .sweep import CLUSTER_ID, sweep_quietly

IDENTITY_TIMEOUT = 5.0  # seconds to wait for a scheduler's answer


@dataclass(frozen=True)
class ClusterLine:
    """One job cluster as listed."""

    cluster_id: str
    jobs: tuple[JobState, ...]
    workers: int | None  # None: the scheduler did not answer
    age: float  # seconds since the cluster was made

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h for j in self.jobs if j.state == "running"
                                   for h in j.hosts))

    def format(self) -> str:
        jobs = ", ".join(f"{j.job_id} {j.state}" for j in self.jobs) or "ended"
        workers = "?" if self.workers is None else str(self.workers)
        return (f"{self.cluster_id}  {jobs:<32}  {workers:>7}  "
                f"{','.join(self.hosts) or '-':<20}  {_age(self.age)}")


HEADER = f"{'ID':<8}  {'JOBS':<32}  {'WORKERS':>7}  {'HOSTS':<20}  AGE"


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


async def _workers(directory: ClusterDir) -> int | None:
    """The scheduler's worker count, asked with the cluster's keys (None: no answer)."""
    from distributed.core import rpc

    from ..runtime.tls import security_for

    contact = directory.read_contact()
    if contact is None:
        return None
    args = security_for(directory.load_tls()).get_connection_args("client")
    try:
        async with rpc(contact.address, connection_args=args, timeout=IDENTITY_TIMEOUT) as r:
            info = await asyncio.wait_for(r.identity(), IDENTITY_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return None
    return len(info.get("workers", {}))


async def list_clusters(parent: str | os.PathLike) -> list[ClusterLine]:
    """This user's job clusters under ``parent`` (after sweeping ended ones), oldest first.
    `MPILXError` when the batch system cannot be asked."""
    base = Path(os.path.expanduser(str(parent)))
    if not base.is_dir():
        return []
    await sweep_quietly(base, batch_system(job_spec("jobs").batch_system))
    directories = sorted((p for p in base.iterdir() if CLUSTER_ID.fullmatch(p.name)
                          and p.is_dir() and not p.is_symlink()), key=lambda p: p.stat().st_ctime)
    lines = []
    for path in directories:
        directory = ClusterDir(path)
        try:
            directory.check()
        except MPILXError:
            continue  # not private: not one of ours to touch
        system = batch_system(job_spec("jobs", **(directory.read_shape() or {})).batch_system)
        jobs = tuple(j for j in await system.list(f"dmlx-{path.name}") if j.active)
        workers = await _workers(directory) if jobs else None
        lines.append(ClusterLine(path.name, jobs, workers, time.time() - path.stat().st_ctime))
    return lines
