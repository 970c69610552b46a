"""Batch mode: a script under `mpirun -np N python script.py` builds its own cluster."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import NoReturn

from ..logs import RankContext, configure
from ..mpi.channel import Channel

logger = logging.getLogger(__name__)


def in_mpi_world() -> bool:
    """True when this process was started by an MPI launcher with more than one rank."""
    from ..mpi.environ import mpi_world_size

    size = mpi_world_size()
    return size is not None and size > 1


def serve(channel: Channel) -> bool:
    """Ranks above 0: serve as scheduler or worker until rank 0 closes the cluster. Returns
    whether MPI_Finalize is still safe (no rank of the job died)."""
    from ..runtime.rank_main import drop_inherited_secrets, rank_main, say_hello

    say_hello(channel)
    context = RankContext(channel.rank, channel.size)
    configure(context)
    drop_inherited_secrets()
    script = _keep_workers_from_rerunning_the_script()
    outcome: list[bool] = []
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        outcome.append(asyncio.run(rank_main(channel, context)))
    else:  # called from async code: serve from a thread with its own loop
        t = threading.Thread(target=lambda: outcome.append(asyncio.run(rank_main(channel, context))))
        t.start()
        t.join()
    if script is not None:
        sys.modules["__main__"].__file__ = script
    return all(outcome)


def serve_and_exit(channel: Channel) -> NoReturn:
    """`serve`, then end the process: the script's code after `MPICluster()` runs on rank 0
    only (``dask_mpi.initialize()``'s default)."""
    channel.exit(0, finalize=serve(channel))


def serve_and_return(channel: Channel) -> None:
    """`serve`, then return so that the script goes on on this rank too
    (``dask_mpi.initialize(exit=False)``). If a rank of the job died, MPI_Finalize at exit
    would wait for it forever, so this rank ends instead, saying why."""
    if not serve(channel):
        logger.error("a rank of this MPI job died, so rank %d cannot finalize MPI; it exits "
                     "instead of going on with the script", channel.rank)
        channel.exit(1, finalize=False)
    channel.drain()  # MPICH's MPI_Finalize, at this process's exit, fails on unread messages


def _keep_workers_from_rerunning_the_script() -> str | None:
    """A Nanny starts its worker with multiprocessing's "spawn", which re-runs the main
    script (as ``__mp_main__``) when it knows its path; the script calls MPICluster() at
    top level, so the worker would try to build a cluster itself. Without ``__file__`` the
    spawned worker skips that step (functions from the script still travel by value)."""
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None and hasattr(main, "__file__"):
        main.__mpi_lx_script__ = main.__file__
        del main.__file__
        return main.__mpi_lx_script__
    return None
