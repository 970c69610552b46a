"""`dask-mpi-lx launch`: start MPI, pick this rank's part, return the process exit code."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, NoReturn

from ..config import Settings
from ..logs import RankContext, configure
from ..mpi.environ import has_hub_secrets, rank_from_env, scrub_hub_secrets

if TYPE_CHECKING:
    from ..mpi.channel import Channel
    from .serve import ServeOptions
    from .supervisor import JobEnd

logger = logging.getLogger(__name__)


def reexec_without_hub_secrets() -> None:
    """On a Dask rank, replace this process (same pid, before MPI starts) by one whose
    environment has no hub tokens, so not even ``/proc/<pid>/environ`` holds them."""
    rank = rank_from_env()
    if rank is None or rank == 0 or not has_hub_secrets(os.environ):
        return
    argv = [sys.executable, "-m", "dask_mpi_lx", *sys.argv[1:]]
    os.execve(sys.executable, argv, scrub_hub_secrets(os.environ))


def _start_rank(settings: Settings | None, notebook: bool) -> tuple[Channel, RankContext]:
    """Start MPI; ranks above 0 serve their Dask part here and end the process.
    ``notebook``: rank 0 runs the notebook, which the Dask ranks on its host let go first."""
    from ..mpi.channel import Channel
    from ..mpi.start_watchdog import mpi_start_watchdog

    with mpi_start_watchdog(settings.mpi_init_timeout if settings else 120.0):
        channel = Channel(poll_interval=settings.poll_interval if settings else 0.1)
    context = RankContext(channel.rank, channel.size,
                          "notebook-supervisor" if channel.rank == 0 else "starting")
    if channel.rank != 0:
        from ..runtime.priority import yield_to_notebook
        from ..runtime.rank_main import drop_inherited_secrets, rank_main, say_hello, welcome

        say_hello(channel)
        rank0 = welcome(channel)  # rank 0's host and pid, before the slow imports
        niceness = settings.notebook_host_nice if settings and notebook else 0
        before = os.getpriority(os.PRIO_PROCESS, 0)
        nice = yield_to_notebook(rank0.host if rank0 else None, niceness)
        import distributed  # noqa: F401  (sets up its logging first, so ours wins)

        configure(context)
        if nice != before:  # not an inherited niceness: this rank yields to the notebook
            logger.info("niceness %d: the notebook on this host goes first", nice)
        drop_inherited_secrets()
        plan_timeout = 2 * settings.scheduler_timeout + 30 if settings else 90.0
        channel.exit(0, finalize=asyncio.run(rank_main(channel, context, plan_timeout, rank0)))
    return channel, context


def _end(channel: Channel, end: JobEnd) -> NoReturn:
    if end.silent:
        logger.error("ranks %s did not stop within the shutdown timeout; aborting the MPI job "
                     "so that no rank is left behind", end.silent)
        channel.abort(end.rc or 1)
    if end.lost:
        logger.warning("ranks %s died during the job; leaving without MPI_Finalize",
                       end.lost)
    channel.exit(end.rc, finalize=not end.lost)


def run_launch(settings: Settings | None, cmd: list[str], settings_problem: str | None) -> NoReturn:
    """Run this rank's part of the job, then end the process (rank 0 with CMD's exit code)."""
    channel, context = _start_rank(settings, notebook=True)
    configure(context)  # rank 0 never imports distributed: the notebook starts sooner
    from .supervisor import supervise

    if settings_problem:
        logger.error("bad Dask settings: %s", settings_problem)
    _end(channel, asyncio.run(supervise(channel, settings, cmd, settings_problem)))


def run_serve(settings: Settings, options: ServeOptions) -> NoReturn:
    """`dask-mpi-lx serve`: this rank's part of a job that is only a Dask cluster."""
    channel, context = _start_rank(settings, notebook=False)
    context.role = "keeper"
    configure(context)
    from .serve import serve

    _end(channel, asyncio.run(serve(channel, settings, options)))
