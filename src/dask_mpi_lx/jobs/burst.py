"""Bursting: a notebook job's cluster grows past its allocation with extra MPI jobs whose
workers join the job's scheduler (`MPICluster.scale` above `limit`), within the limits the
site set (`mpi-lx.burst`, from the spawner's ``dask_burst_*`` traits)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dask.config

from ..config import NAMESPACE, setting
from ..exceptions import ConfigError, MPILXError, ScaleError
from ..mpi.environ import job_id as current_job_id
from ..runtime.cluster_dir import ClusterDir, Contact
from ..runtime.scratch import safe_job_id
from ..runtime.tls import JobTLS
from .batch_system import current_batch_system
from .jobset import JobSet
from .spec import MIN_JOINING_JOB, JobSpec, job_spec

logger = logging.getLogger(__name__)

MIN_TIME_LEFT = 120  # seconds: a burst job shorter than this would not be worth its start


def directory_name(job_id: str) -> str:
    return f"burst-{safe_job_id(job_id)}"


def burst_directory(job_id: str) -> Path:
    """Where a notebook job's burst jobs find its keys and scheduler (`mpi-lx.jobs.directory`)."""
    return Path(os.path.expanduser(str(setting("jobs.directory")))) / directory_name(job_id)


def job_name(job_id: str) -> str:
    return f"dmlx-burst-{safe_job_id(job_id)}"


def _job_tls() -> JobTLS | None:
    """The notebook job's keys, from the files its dask config names."""
    cert = dask.config.get("distributed.comm.tls.client.cert", default=None)
    key = dask.config.get("distributed.comm.tls.client.key", default=None)
    if not cert or not key:
        return None
    return JobTLS(cert_pem=Path(cert).read_text(), key_pem=Path(key).read_text())


class Burst:
    """The burst jobs of the notebook job this process runs in."""

    def __init__(self, address: str, job_id: str | None = None):
        self.address = address
        self.job_id = job_id or current_job_id()
        self._jobs: JobSet | None = None
        self.max_jobs = int(setting("burst.max-jobs") or 0)

    def _directory(self) -> ClusterDir:
        path = burst_directory(self.job_id)
        directory = ClusterDir(path)
        if directory.path.is_dir():
            directory.check()
        else:
            directory = ClusterDir.create(path.parent, path.name, _job_tls())
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
        (0: cancel them all); returns the active burst jobs' ids."""
        if extra_workers > 0 and spec is None:
            raise ConfigError(f"{NAMESPACE}.burst", None, "a job shape")
        if self._jobs is None:
            if extra_workers <= 0 and not burst_directory(self.job_id).is_dir():
                return []
            self._jobs = JobSet(job_name(self.job_id), spec or job_spec("jobs"),
                                self._directory())
        if spec is not None:
            self._jobs.spec = spec
        needed = -(-extra_workers // self._jobs.spec.workers(True)) if extra_workers > 0 else 0
        if needed > self.max_jobs:
            raise ScaleError(
                f"{extra_workers} workers beyond this job's allocation need {needed} burst "
                f"jobs of {self._jobs.spec.workers(True)} workers; the site allows "
                f"{self.max_jobs} (mpi-lx.burst.max-jobs)")
        await self._jobs.refresh()
        await self._jobs.match_workers(extra_workers if extra_workers > 0 else 0)
        return [s.job_id for s in self._jobs.joining]

    def describe(self) -> str:
        return self._jobs.describe() if self._jobs else ""


async def end_of_job(job_id: str) -> None:
    """At the notebook job's end: cancel its burst jobs (by name, on the job's own batch
    system) and remove their directory; the burst workers would also leave once the
    scheduler is gone."""
    directory = burst_directory(job_id)
    if not directory.is_dir():
        return
    system = current_batch_system()
    if system is not None:
        try:
            await system.cancel_by_name(job_name(job_id))
        except MPILXError as e:
            logger.warning("could not cancel the burst jobs of job %s: %s", job_id, e)
    ClusterDir(directory).remove()
