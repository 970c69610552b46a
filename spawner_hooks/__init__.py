"""Hub side of Dask-MPI-LX (import name `dask_mpi_lx_hooks`): an options form with bounded
fields, batchspawner spawners that wrap the job in `dask-mpi-lx launch`, spawn progress,
and a port API that accepts nothing but a port.

In ``jupyterhub_config.py``::

    c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPISlurmSpawner"
    c.DaskMPISlurmSpawner.dask_max_cores = 36
"""

from __future__ import annotations

from typing import Any

__all__ = ["DaskMPISlurmSpawner", "DaskMPIPBSSpawner", "DaskOptions", "OptionError"]


def __getattr__(name: str) -> Any:
    if name in ("DaskMPISlurmSpawner", "DaskMPIPBSSpawner"):
        from . import spawner

        return getattr(spawner, name)
    if name in ("DaskOptions", "OptionError"):
        from . import options

        return getattr(options, name)
    raise AttributeError(name)
