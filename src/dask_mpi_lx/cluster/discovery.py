"""dask-ctl discovery: `dask cluster list` inside a job shows the job's MPI cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..config import JOB_ID, JOB_SCHEDULER_ADDRESS, job_setting


async def discover() -> AsyncIterator[tuple[str, type]]:
    """Yield ``(name, MPICluster)`` when this process runs inside a launched MPI job."""
    if job_setting(JOB_SCHEDULER_ADDRESS):
        from .mpicluster import MPICluster

        yield f"MPI job {job_setting(JOB_ID) or '?'}", MPICluster
