"""Entry of every rank above 0: say hello, get the plan, serve the role, say goodbye."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import dask.config

from ..config import rank_dask_config
from ..logs import RankContext
from ..mpi.channel import Channel
from ..mpi.environ import HUB_SECRET_PREFIXES, MPI_PREFIXES, scrub_process_environ
from .dask_ranks import RankJob, StopWatch, install_stop_signals, serve_rank
from .liveness import RankProcess
from .protocol import Bye, PlanMessage, RankHello, RankState, StateReport, Tag
from .roles import Role
from .scratch import remove_rank_scratch

logger = logging.getLogger(__name__)

WELCOME_TIMEOUT = 10.0  # seconds a rank waits for rank 0's first message before going on


def drop_inherited_secrets() -> None:
    """Remove hub tokens from this Dask rank's environment (rank 0's child keeps them),
    also from what ``/proc/<pid>/environ`` shows (batch mode cannot re-execute: MPI runs),
    and MPI variables, so the worker processes a Nanny starts are not part of the MPI job."""
    scrub_process_environ(HUB_SECRET_PREFIXES + MPI_PREFIXES, wipe=HUB_SECRET_PREFIXES)


def _remove_own_scratch(job: RankJob) -> None:
    """This rank's spill directory, gone however the rank leaves (see `remove_rank_scratch`)."""
    if job.settings is not None and not job.settings.local_directory:
        remove_rank_scratch(job.settings.job_directory, job.job_id, [job.channel.rank])


async def _scratch_goes_first_on_a_signal(job: RankJob, stop: StopWatch) -> None:
    """After SIGTERM (scancel, walltime, mpirun) the launcher SIGKILLs the ranks about a
    second later, before a worker may have closed: remove the spill directory at once."""
    await stop.wait()
    if stop.reason.startswith("signal-"):
        _remove_own_scratch(job)


def say_hello(channel: Channel) -> None:
    """Tell rank 0 where this rank runs: first thing after MPI starts, before the slow
    imports, so rank 0 can plan (and start the notebook) while the ranks load Dask."""
    channel.send(0, Tag.HELLO, RankHello(socket.gethostname(), os.getpid()))


def welcome(channel: Channel, timeout: float = WELCOME_TIMEOUT) -> RankProcess | None:
    """Rank 0's host and pid from its WELCOME (its first message, sent as it starts the
    cluster); None if it did not come within ``timeout`` (rank 0 gone or stuck)."""
    deadline = time.monotonic() + timeout
    while (got := channel.try_recv(Tag.WELCOME, source=0)) is None:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    return RankProcess(0, got[1].host, got[1].pid)


async def rank_main(channel: Channel, context: RankContext, plan_timeout: float = 90.0,
                    rank0: RankProcess | None = None) -> bool:
    """Serve this rank's part until told to stop; return whether MPI_Finalize is safe.

    Rank 0 sends the plan within its scheduler timeout; ``plan_timeout`` bounds the wait
    when rank 0 is dead or stuck and no other sign of it reaches this rank."""
    stop = StopWatch(channel, rank0)
    install_stop_signals(stop)
    plan_task = asyncio.ensure_future(channel.recv(Tag.PLAN, source=0, timeout=plan_timeout))
    await asyncio.wait([plan_task, asyncio.ensure_future(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if plan_task.done() and plan_task.result() is None:
        logger.error("no plan from rank 0 within %gs (rank 0 gone or stuck); leaving the job",
                     plan_timeout)
        stop.finalize = False
        stop.set("no-plan")
    elif plan_task.done():
        msg: PlanMessage = plan_task.result()[1]
        job = RankJob(channel=channel, plan=msg.plan, settings=msg.settings, tls=msg.tls,
                      job_id=msg.job_id, endpoint=msg.endpoint, lease=msg.lease)
        if msg.settings is not None:
            channel.poll_interval = msg.settings.poll_interval
        context.role = job.role.value
        dask.config.set(rank_dask_config())
        logger.info("role: %s", job.role.value)
        early = asyncio.ensure_future(_scratch_goes_first_on_a_signal(job, stop))
        try:
            await serve_guarded(job, stop)
        finally:
            early.cancel()
            _remove_own_scratch(job)
    else:
        plan_task.cancel()
    await stop.wait()
    stop.cancel()
    channel.send(0, Tag.BYE, Bye(context.role))
    await channel.flush(2.0)
    return stop.finalize


async def serve_guarded(job: RankJob, stop: StopWatch) -> None:
    """Serve the role; an error that escapes it is logged with its traceback and this rank
    leaves the cluster but stays in the MPI job until the end (an exit now would end the
    whole job, notebook included, or leave MPI_Finalize waiting for everyone)."""
    try:
        await serve_rank(job, stop)
    except Exception:
        if job.role is Role.WORKER:
            job.channel.send(job.plan.pool_rank, Tag.STATE,
                             StateReport(RankState.LOST, "unhandled error on the rank"))
        logger.exception("unhandled error in this rank's %s; it leaves the Dask cluster and "
                         "waits for the end of the job (the notebook and other ranks go on)",
                         job.role.value)
