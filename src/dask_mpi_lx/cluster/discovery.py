"""dask-ctl discovery: `dask cluster list` inside a job shows the job's MPI cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import dask.config


async def discover() -> AsyncIterator[tuple[str, type]]:
    """Yield ``(name, MPICluster)`` when this process runs inside a launched MPI job."""
    job = dask.config.get("mpi-lx.job", default=None)
    if job and job.get("scheduler-address"):
        from .mpicluster import MPICluster

        yield f"MPI job {job.get('id', '?')}", MPICluster
