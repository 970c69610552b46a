"""Bursting: a notebook job's cluster grows past its allocation with extra MPI jobs whose
workers join the job's scheduler (`MPICluster.scale` above `limit`), within the limits the
site set (`mpi-lx.burst`, from the spawner's ``dask_burst_*`` traits)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import dask.config

from ..config import NAMESPACE, setting
from ..exceptions import ConfigError, MPILXError, ScaleError
from ..mpi.environ import full_job_id
from ..runtime.cluster_dir import ClusterDir, Contact
from ..runtime.scratch import safe_job_id
from ..runtime.tls import JobTLS
from .batch_system import current_batch_system
from .jobset import JobSet
from .spec import MIN_JOINING_JOB, JobSpec, job_spec
from .sweep import sweep_quietly

logger = logging.getLogger(__name__)

MIN_TIME_LEFT = 120  # seconds: a burst job shorter than this would not be worth its start
PLAN_TIMEOUT = 120.0  # seconds one cluster object waits for another's burst plan
LOCK_FILE = "plan.lock"


def directory_name(job_id: str, token: str) -> str:
    """``burst-<full job id>-<token>``: the full id (Casper and Derecho share the home), and
    a token of this job's own, so that a later job with the same id never meets its files."""
    return f"burst-{safe_job_id(job_id)}-{token}"


def jobs_directory() -> Path:
    return Path(os.path.expanduser(str(setting("jobs.directory"))))


def job_name(job_id: str, token: str) -> str:
    return f"dmlx-{directory_name(job_id, token)}"


def burst_token(tls: JobTLS | None, address: str) -> str:
    """8 hex digits that every cluster object of one notebook job computes alike and that
    differ between jobs: a digest of the job's certificate (made fresh for each job), or
    of its scheduler's address without TLS."""
    return hashlib.sha256((tls.cert_pem if tls else address).encode()).hexdigest()[:8]


def _job_tls() -> JobTLS | None:
    """The notebook job's keys, from the files its dask config names."""
    cert = dask.config.get("distributed.comm.tls.client.cert", default=None)
    key = dask.config.get("distributed.comm.tls.client.key", default=None)
    if not cert or not key:
        return None
    return JobTLS(cert_pem=Path(cert).read_text(), key_pem=Path(key).read_text())


_IN_PROCESS: dict[tuple[str, int], asyncio.Lock] = {}


@contextlib.asynccontextmanager
async def plan_lock(directory: Path, timeout: float = PLAN_TIMEOUT) -> AsyncIterator[None]:
    """One burst plan at a time per notebook job: across the cluster objects of this process
    (an asyncio lock per event loop) and across its kernels (``flock`` on a file in the
    burst directory, which goes with the directory)."""
    key = (str(directory), id(asyncio.get_running_loop()))
    async with _IN_PROCESS.setdefault(key, asyncio.Lock()):
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ScaleError(
                            f"another cluster object of this job has been changing its burst "
                            f"jobs for {timeout:g}s; try again") from None
                    await asyncio.sleep(0.2)
            yield
        finally:
            os.close(fd)  # releases the lock


class Burst:
    """The burst jobs of the notebook job this process runs in."""

    def __init__(self, address: str, job_id: str | None = None):
        self.address = address
        self.job_id = job_id or full_job_id()
        self._tls = _job_tls()
        self.token = burst_token(self._tls, address)
        self._jobs: JobSet | None = None
        self.max_jobs = int(setting("burst.max-jobs") or 0)

    @property
    def path(self) -> Path:
        """Where this job's burst jobs find its keys and scheduler (`mpi-lx.jobs.directory`)."""
        return jobs_directory() / directory_name(self.job_id, self.token)

    async def _directory(self) -> ClusterDir:
        """This job's burst directory (made with its keys if missing), after removing the
        directories of ended clusters (an earlier job's burst among them)."""
        directory = ClusterDir(self.path)
        if directory.path.is_dir():
            directory.check()
        else:
            system = current_batch_system()
            if system is not None:
                await sweep_quietly(self.path.parent, system, keep=(self.path.name,))
            with contextlib.suppress(FileExistsError):  # another object of this job made it
                directory = ClusterDir.create(self.path.parent, self.path.name, self._tls)
        if directory.read_contact() is None:
            directory.write_contact(Contact(self.job_id, self.address))
        return directory

    async def _time_left(self) -> int | None:
        """What is left of the notebook job's walltime (None: not known)."""
        system = current_batch_system()
        if system is None:
            return None
        try:
            return await system.time_left(self.job_id)
        except MPILXError:
            return None

    async def spec(self, ranks: int, threads: int, worker_memory: int) -> JobSpec:
        """One burst job: ``burst.cores`` (default ``ranks``, the notebook job's) ranks on
        ``burst.max-nodes`` nodes, ending with the notebook job at the latest."""
        nodes = int(setting("burst.max-nodes") or 1)
        cores = setting("burst.cores") or ranks
        cores = max(MIN_JOINING_JOB * nodes, int(cores) // nodes * nodes)
        env = os.environ
        queue = setting("burst.queue") or env.get("SLURM_JOB_PARTITION") or \
            env.get("PBS_QUEUE") or None
        # charged like the notebook job: its project code, on its batch system
        account = env.get("SLURM_JOB_ACCOUNT") or env.get("PBS_ACCOUNT") or None
        system = current_batch_system()
        shape = {"nodes": nodes, "cores": cores, "threads": threads,
                 "worker_memory": worker_memory, "queue": queue, "account": account,
                 **({"batch_system": system.name} if system else {})}
        base = job_spec("jobs", walltime=setting("burst.walltime") or None, **shape)
        left = await self._time_left()
        if left is not None and left < MIN_TIME_LEFT:
            raise ScaleError(f"the notebook job has {left}s left: too little for a burst job")
        if left is not None and left < base.walltime:
            base = job_spec("jobs", walltime=left - 30, **shape)
        return base

    async def match(self, extra_workers: int, spec: JobSpec | None) -> list[str]:
        """Hold enough burst jobs for ``extra_workers`` workers beyond the allocation
        (0: cancel them all); returns the active burst jobs' ids. Every cluster object of
        the job plans in turn, from the batch system's own list of the job's burst jobs."""
        if extra_workers > 0 and spec is None:
            raise ConfigError(f"{NAMESPACE}.burst", None, "a job shape")
        if self._jobs is None:
            if extra_workers <= 0 and not self.path.is_dir():
                return []
            self._jobs = JobSet(job_name(self.job_id, self.token), spec or job_spec("jobs"),
                                await self._directory())
        if spec is not None:
            self._jobs.spec = spec
        needed = -(-extra_workers // self._jobs.spec.workers(True)) if extra_workers > 0 else 0
        if needed > self.max_jobs:
            raise ScaleError(
                f"{extra_workers} workers beyond this job's allocation need {needed} burst "
                f"jobs of {self._jobs.spec.workers(True)} workers; the site allows "
                f"{self.max_jobs} (mpi-lx.burst.max-jobs)")
        async with plan_lock(self._jobs.directory.path):
            await self._jobs.refresh()
            await self._jobs.match_workers(extra_workers if extra_workers > 0 else 0)
        return [s.job_id for s in self._jobs.joining]

    def describe(self) -> str:
        return self._jobs.describe() if self._jobs else ""


async def end_of_job(job_id: str | None = None) -> None:
    """At the notebook job's end: cancel its burst jobs (by name, on the job's own batch
    system) and remove their directory; the burst workers would also leave once the
    scheduler is gone. ``job_id``: the full id (default: this job's)."""
    job_id = job_id or full_job_id()
    directories = sorted(jobs_directory().glob(directory_name(job_id, "*")))
    system = current_batch_system()
    for path in directories:
        if system is not None:
            try:
                await system.cancel_by_name(f"dmlx-{path.name}")
            except MPILXError as e:
                logger.warning("could not cancel the burst jobs of job %s: %s", job_id, e)
                continue  # kept: the next sweep removes it once the jobs have ended
        ClusterDir(path).remove()
