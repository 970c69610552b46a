"""What ranks above 0 do: run the scheduler, run a worker (parkable), or idle, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..mpi.channel import Channel
from ..mpi.environ import scrub_process_environ
from .coordinator import Endpoint, default_dashboard_address
from .jobtls import JobTLS, security_for
from .pool import WorkerPool
from .protocol import Tag
from .roles import Plan, Role, worker_name

logger = logging.getLogger(__name__)


@dataclass
class RankJob:
    """Everything a Dask rank knows after rank 0's plan arrived."""

    channel: Channel
    plan: Plan | None
    settings: Settings
    tls: JobTLS | None
    job_id: str
    endpoint: Endpoint | None = None

    @property
    def role(self) -> Role:
        return self.plan.role(self.channel.rank) if self.plan else Role.IDLE


class StopWatch:
    """Set when rank 0 says stop (or a signal arrives); remembers why."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.event = asyncio.Event()
        self.reason = ""
        self._task = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        got = await self.channel.recv(Tag.STOP, source=0)
        self.set(got[1]["reason"] if got else "stop")

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    async def wait(self) -> None:
        await self.event.wait()

    def cancel(self) -> None:
        self._task.cancel()


def _import_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


async def _first(*aws: Any) -> None:
    """Wait until the first of ``aws`` finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def _dashboard_address(job: RankJob) -> str:
    if job.endpoint and job.endpoint.dashboard:
        return "{}:{}".format(*job.endpoint.dashboard)
    assert job.plan is not None
    return default_dashboard_address(job.plan, job.settings)


async def _wait_for_workers(scheduler: Any, n: int, timeout: float, stop: StopWatch) -> None:
    """Until ``n`` workers registered (rank 0 then hands over a complete cluster), bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(scheduler.workers) < n and not stop.event.is_set():
        if asyncio.get_running_loop().time() >= deadline:
            logger.warning("only %d of %d workers registered within %gs; going ahead",
                           len(scheduler.workers), n, timeout)
            return
        await asyncio.sleep(0.05)


async def _quiet_when_draining(job: RankJob) -> None:
    """Rank 0 is stopping the workers on purpose: distributed logs each stream that closes
    under a message in flight as INFO with a traceback ("Batched Comm Closed"); that is
    expected now, so only warnings and errors of that logger are kept from here on."""
    got = await job.channel.recv(Tag.DRAINING, source=0)
    if got:
        logging.getLogger("distributed.batched").setLevel(logging.WARNING)


async def run_scheduler(job: RankJob, stop: StopWatch) -> None:
    """Start the scheduler, tell rank 0 and the workers where it is, serve until stopped."""
    from distributed import Scheduler

    assert job.plan is not None
    s = job.settings
    try:
        endpoint = job.endpoint or Endpoint(listen_host=None, port=s.scheduler_port)
        dashboard_address = _dashboard_address(job)
        scheduler = Scheduler(
            host=endpoint.listen_host,
            port=endpoint.port,
            contact_address=endpoint.contact,
            protocol=s.protocol,
            interface=None if endpoint.listen_host else s.interface,
            security=security_for(job.tls),
            dashboard=s.dashboard,
            dashboard_address=dashboard_address,
        )
        await scheduler
    except Exception as e:  # report any start failure to rank 0: the notebook must still start
        msg = f"scheduler failed to start: {type(e).__name__}: {e}"
        logger.error(msg)
        for r in (0, *job.plan.worker_ranks):
            job.channel.send(r, Tag.READY, {"error": msg})
        await stop.wait()
        return
    dashboard = None
    if s.dashboard and "dashboard" in scheduler.services:
        port = scheduler.services["dashboard"].port
        host = dashboard_address.rpartition(":")[0] or job.plan.hosts[job.channel.rank]
        dashboard = (host, port)
    pool = WorkerPool(scheduler, job.channel, job.plan, job.job_id, dashboard)
    pool.start()
    quiet = asyncio.ensure_future(_quiet_when_draining(job))
    ready = {"address": scheduler.address, "dashboard": dashboard}
    for r in job.plan.worker_ranks:
        job.channel.send(r, Tag.READY, ready)
    logger.info("scheduler at %s, dashboard %s, %d worker ranks", scheduler.address,
                dashboard, len(job.plan.worker_ranks))
    if s.wait_for_workers:  # rank 0 starts the command once they are all in
        await _wait_for_workers(scheduler, len(job.plan.worker_ranks), s.scheduler_timeout, stop)
    job.channel.send(0, Tag.READY, {**ready, "workers": len(scheduler.workers)})
    await _first(stop.wait(), scheduler.finished())
    quiet.cancel()
    await pool.stop()
    if not stop.event.is_set():
        logger.warning("scheduler closed before the job ended; this rank idles until the end")
        await stop.wait()
    else:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(scheduler.close(reason=stop.reason),
                                   0.5 * s.stop_timeout(job.channel.size))


def _worker_listen_kwargs(job: RankJob) -> dict[str, Any]:
    """Single-host jobs: the worker, its nanny and its HTTP endpoint on 127.0.0.1 only."""
    listen = job.endpoint.listen_host if job.endpoint else None
    if listen:
        return {"host": listen, "dashboard_address": f"{listen}:0"}
    return {"interface": job.settings.interface}


async def run_worker(job: RankJob, stop: StopWatch) -> None:
    """Run one worker (under a Nanny by default); park when it is closed, unpark on request."""
    assert job.plan is not None
    s = job.settings
    got = None
    waiter = asyncio.ensure_future(job.channel.recv(Tag.READY, source=job.plan.scheduler_rank))
    await _first(stop.wait(), asyncio.shield(waiter))
    if waiter.done():
        got = waiter.result()
    else:
        waiter.cancel()
    if not got or "error" in got[1]:
        if got:
            logger.warning("no worker: %s", got[1]["error"])
        await stop.wait()
        return
    address = got[1]["address"]
    cls = _import_class(s.worker_class)
    local_directory = s.local_directory or tempfile.mkdtemp(
        prefix=f"dask-mpi-lx-{job.job_id}-rank{job.channel.rank}-", dir=s.job_directory
    )
    sched = job.plan.scheduler_rank
    # the worker process a Nanny spawns sets up its logging from this on import
    os.environ["DASK_DISTRIBUTED__ADMIN__LOG_FORMAT"] = (
        f"%(asctime)s dask-mpi-lx[rank {job.channel.rank}/{job.channel.size} worker-process "
        f"@{socket.gethostname()}] %(name)s %(levelname)s: %(message)s")
    while not stop.event.is_set():
        scrub_process_environ()  # PMIx may set more after MPI_Init: keep worker processes clean
        worker = cls(
            address,
            name=worker_name(job.channel.rank),
            nthreads=s.nthreads,
            memory_limit=s.memory_limit,
            local_directory=local_directory,
            **_worker_listen_kwargs(job),
            protocol=s.protocol,
            security=security_for(job.tls),
            death_timeout=60,
        )
        try:
            await worker
        except Exception as e:
            logger.error("worker failed to start: %s: %s", type(e).__name__, e)
        else:
            job.channel.send(sched, Tag.STATE, {"state": "active"})
            await _first(stop.wait(), worker.finished())
            if stop.event.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker.close(reason=stop.reason),
                                           0.3 * s.stop_timeout(job.channel.size))
                break
        job.channel.send(sched, Tag.STATE, {"state": "parked"})
        logger.info("worker parked; rank stays up until unparked or stopped")
        unpark = asyncio.ensure_future(job.channel.recv(Tag.UNPARK, source=sched))
        await _first(stop.wait(), asyncio.shield(unpark))
        if not unpark.done():
            unpark.cancel()
            break
        logger.info("unparked: starting the worker again")
    if not s.local_directory:
        shutil.rmtree(local_directory, ignore_errors=True)


async def serve_rank(job: RankJob, stop: StopWatch) -> None:
    """Run this rank's role until rank 0 says stop."""
    role = job.role
    if role is Role.SCHEDULER:
        await run_scheduler(job, stop)
    elif role is Role.WORKER:
        await run_worker(job, stop)
    else:
        await stop.wait()


def install_stop_signals(stop: StopWatch) -> None:
    """SIGTERM/SIGINT/SIGHUP on a Dask rank: stop serving, then leave as after rank 0's stop
    message (rank 0 and mpirun get the same signal from scancel, walltime or mpirun)."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        logger.info("got %s; closing this rank's Dask part", name)
        stop.set(f"signal-{name}")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
