"""Batch mode: a script under `mpirun -np N python script.py` builds its own cluster."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading

from ..config import Settings
from ..logs import RankContext, configure
from ..mpi.channel import Channel

logger = logging.getLogger(__name__)


def in_mpi_world() -> bool:
    """True when this process was started by an MPI launcher with more than one rank."""
    from ..mpi.environ import size_from_env

    size = size_from_env()
    return size is not None and size > 1


def serve_and_exit(channel: Channel) -> None:
    """Ranks above 0 serve as scheduler or worker until rank 0 closes the cluster, then exit
    the process: the script's code after `MPICluster()` runs on rank 0 only."""
    from ..launcher.rank_main import drop_inherited_secrets, rank_main

    context = RankContext(channel.rank, channel.size)
    configure(context)
    drop_inherited_secrets()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(rank_main(channel, context))
    else:  # called from async code: serve from a thread with its own loop
        t = threading.Thread(target=asyncio.run, args=(rank_main(channel, context),))
        t.start()
        t.join()
    sys.exit(0)


def rank0_settings(overrides: dict) -> Settings:
    from ..config import resolve

    return resolve(**overrides)
