"""The Dask tab's cluster factory (``labextension.factory``): inside a launched job its
first cluster is the job's own (the initial card, and again after that card's SHUTDOWN);
every other one, NEW's, is an `MPIJobCluster` of batch jobs. Outside a job: always that."""

from __future__ import annotations

from typing import Any

from distributed.core import Status

from ..config import JOB_SCHEDULER_ADDRESS, job_setting
from .mpicluster import MPICluster


def lab_cluster(*args: Any, asynchronous: bool = True, **kwargs: Any) -> Any:
    """A cluster for the Dask tab; its manager awaits it."""
    address = job_setting(JOB_SCHEDULER_ADDRESS)
    attached = MPICluster._attached.get(address) if address else None
    if address and (attached is None or attached.status != Status.running):
        return MPICluster(exclusive=True, park_on_close=True, asynchronous=asynchronous)
    from ..jobs.cluster import MPIJobCluster

    return MPIJobCluster(*args, asynchronous=asynchronous, _dask_tab=True, **kwargs)
