"""Dask-MPI-LX: a Dask cluster inside the MPI allocation of a JupyterHub or batch job.

Public API: `MPICluster` (a job's own cluster) and `MPIJobCluster` (clusters that run as
batch jobs of their own). Importing this package starts no MPI and writes nothing.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import config  # noqa: F401  (registers the mpi-lx defaults with dask.config)

try:
    __version__ = version("dask-mpi-lx")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["MPICluster", "MPIJobCluster", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "MPICluster":  # imported lazily: `dask-mpi-lx --help` needs no distributed
        from .cluster.mpicluster import MPICluster

        return MPICluster
    if name == "MPIJobCluster":
        from .jobs.cluster import MPIJobCluster

        return MPIJobCluster
    raise AttributeError(name)
