"""What ranks above 0 do: run the scheduler, run a worker (parkable), or idle, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import importlib
import logging
import os
import shutil
import signal
import socket
from dataclasses import dataclass
from typing import Any

import dask

from ..config import Settings
from ..exceptions import MPILXError
from ..mpi.channel import Channel
from ..mpi.environ import scrub_process_environ
from .addresses import WORKER_HTTP_ADDRESS, WORKER_HTTP_ROUTES, job_ip
from .coordinator import default_dashboard_address
from .dashboard_mtls import require_client_certificate
from .dashboard_socket import remove_socket, serve_on_unix_socket
from .liveness import RankProcess
from .pool import WorkerPool
from .protocol import Endpoint, Lease, RankState, Ready, StateReport, Stop, Tag
from .roles import Plan, Role, rank_of_worker
from .scratch import make_rank_scratch
from .tls import JobTLS, security_for

logger = logging.getLogger(__name__)

RANK0_CHECK_INTERVAL = 2.0  # seconds between checks that rank 0's process still exists
RANK0_GONE = "rank-0-gone"
# The kernel's OOM killer takes the process with the highest badness (its share of memory
# plus this). Worker ranks and their worker processes get more than the notebook, its
# kernels and the scheduler (0), so memory pressure costs a worker, which its Nanny restarts.
WORKER_OOM_SCORE_ADJ = 500


def prefer_for_oom_killer() -> None:
    """Raise this process's (and its future children's) OOM score; no privilege needed."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(WORKER_OOM_SCORE_ADJ))


@dataclass
class RankJob:
    """Everything a Dask rank knows after rank 0's plan arrived."""

    channel: Channel
    plan: Plan | None
    settings: Settings
    tls: JobTLS | None
    job_id: str
    endpoint: Endpoint | None = None
    lease: Lease | None = None

    @property
    def role(self) -> Role:
        return self.plan.role(self.channel.rank) if self.plan else Role.IDLE


class StopWatch:
    """Set when rank 0 says stop, a signal arrives, or rank 0 is seen dead; remembers why
    and whether MPI_Finalize is still safe (no rank of the job has died)."""

    def __init__(self, channel: Channel, rank0: RankProcess | None = None):
        self.channel = channel
        self.event = asyncio.Event()
        self.reason = ""
        self.finalize = True
        self.rank0 = rank0  # None until rank 0's WELCOME has arrived
        self._task = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        while True:
            if self.rank0 is None:
                welcome = self.channel.try_recv(Tag.WELCOME, source=0)
                if welcome is not None:
                    self.rank0 = RankProcess(0, welcome[1].host, welcome[1].pid)
            got = await self.channel.recv(Tag.STOP, timeout=RANK0_CHECK_INTERVAL)
            if got is not None:
                self.finalize = got[1].finalize
                self.set(got[1].reason)
                return
            if self.rank0 is not None and not self.rank0.alive():
                logger.error("rank 0 (pid %d on %s) is gone; ending this rank's Dask part",
                             self.rank0.pid, self.rank0.host)
                self.finalize = False
                self.set(RANK0_GONE)
                return

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


def _dashboard_address(job: RankJob, listen: str) -> str | None:
    """host:port for the scheduler's dashboard, or None for no dashboard."""
    if job.endpoint and job.endpoint.dashboard:
        return "{}:{}".format(*job.endpoint.dashboard)
    if job.endpoint and job.endpoint.dashboard_mtls:
        return f"{listen}:0" if job.tls else None
    assert job.plan is not None
    return default_dashboard_address(job.plan, job.settings)


async def _wait_for_workers(scheduler: Any, pool: WorkerPool, timeout: float,
                            stop: StopWatch) -> None:
    """Until every worker rank that is not lost registered (rank 0 then hands over a
    complete cluster), bounded by ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(scheduler.workers) < pool.limit and not stop.event.is_set():
        if asyncio.get_running_loop().time() >= deadline:
            logger.warning("only %d of %d workers registered within %gs; going ahead",
                           len(scheduler.workers), pool.limit, timeout)
            return
        await asyncio.sleep(0.05)


def _address_in_use(e: BaseException | None) -> bool:
    """True if ``e`` or its cause (distributed wraps it) says the port is taken."""
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
            return True
        e = e.__cause__ or e.__context__
    return False


async def run_scheduler(job: RankJob, stop: StopWatch) -> None:
    """Start the scheduler, tell rank 0 and the workers where it is, serve until stopped."""
    from distributed import Scheduler

    from .clean_leave import add_leave_handler  # imports distributed: not before HELLO

    assert job.plan is not None
    s = job.settings
    try:
        endpoint = job.endpoint or Endpoint(listen_host=None, port=s.scheduler_port)
        listen = endpoint.listen_host or job_ip(job.plan, job.channel.rank, s.interface)
        dashboard_address = _dashboard_address(job, listen)
        # the scheduler's scratch space is the rank's own 0700 directory, not a shared
        # /tmp/dask-scratch-space that another user's job may own
        scratch = s.local_directory or make_rank_scratch(s.job_directory, job.job_id,
                                                         job.channel.rank)
        dask.config.set({"temporary-directory": scratch})
        if not (s.dashboard and dashboard_address):  # no dashboard: its HTTP server (always
            # started, on loopback) answers /health only, like the workers'
            dask.config.set({"distributed.scheduler.http.routes": WORKER_HTTP_ROUTES})
        scheduler = Scheduler(
            host=listen,
            port=endpoint.port,
            contact_address=endpoint.contact,
            protocol=s.protocol,
            security=security_for(job.tls),
            dashboard=s.dashboard and dashboard_address is not None,
            dashboard_address=dashboard_address,
        )
        add_leave_handler(scheduler)
        if endpoint.dashboard_socket:  # before the loop can accept anything on TCP
            serve_on_unix_socket(scheduler.http_server, endpoint.dashboard_socket)
        if endpoint.dashboard_mtls and job.tls and dashboard_address:  # the same: first
            require_client_certificate(scheduler.http_server, job.tls, scratch)
        await scheduler
    except Exception as e:  # report any start failure to rank 0: the notebook must still start
        msg = f"scheduler failed to start: {type(e).__name__}: {e}"
        if _address_in_use(e):
            msg = (f"scheduler failed to start: port {endpoint.port} is already in use by "
                   "another process (mpi-lx.scheduler-port 0 picks a free one)")
        logger.error(msg)
        for r in (0, *job.plan.worker_ranks):
            job.channel.send(r, Tag.READY, Ready(error=msg))
        await stop.wait()
        return
    dashboard = None
    if dashboard_address and "dashboard" in scheduler.services:
        port = scheduler.services["dashboard"].port
        host = dashboard_address.rpartition(":")[0] or job.plan.hosts[job.channel.rank]
        dashboard = (host, port)
    pool = WorkerPool(scheduler, job.channel, job.plan, job.job_id, dashboard, job.lease)
    pool.start()
    ready = Ready(address=scheduler.address, dashboard=dashboard)
    for r in job.plan.worker_ranks:
        job.channel.send(r, Tag.READY, ready)
    logger.info("scheduler at %s, dashboard %s, %d worker ranks", scheduler.address,
                dashboard, len(job.plan.worker_ranks))
    if s.wait_for_workers:  # rank 0 starts the command once they are all in
        await _wait_for_workers(scheduler, pool, s.scheduler_timeout, stop)
    job.channel.send(0, Tag.READY, dataclasses.replace(ready, workers=len(scheduler.workers)))
    await _first(stop.wait(), scheduler.finished())
    await pool.stop()
    await _let_joined_workers_leave(scheduler)
    remove_socket(endpoint.dashboard_socket)
    if stop.reason == RANK0_GONE:  # workers on other hosts cannot see rank 0: tell them
        for r in job.plan.worker_ranks:
            job.channel.send(r, Tag.STOP, Stop(RANK0_GONE, finalize=False))
    if not stop.event.is_set():
        logger.warning("scheduler closed before the job ended; this rank idles until the end")
        await stop.wait()
    else:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(scheduler.close(reason=stop.reason),
                                   0.5 * s.stop_timeout(job.channel.size))


JOINED_LEAVE_TIMEOUT = 8.0  # seconds the scheduler waits for other jobs' workers to leave


def joined_leave_budget() -> float:
    """Extra stop time for a job whose scheduler may wait for other jobs' workers (the
    scheduler is stopped in the last 40% of the stop timeout: see `stop_cluster`)."""
    return JOINED_LEAVE_TIMEOUT / 0.4


async def _let_joined_workers_leave(scheduler: Any, timeout: float = JOINED_LEAVE_TIMEOUT) -> None:
    """Before the scheduler closes, wait for the workers of other jobs (`dask-mpi-lx serve
    --join`, bursts) to leave: their jobs see the cluster's contact file go (or are
    cancelled) and stop their workers the clean way, through each rank's Nanny. Closed from
    here instead, a worker closes itself, and both its stop-queue thread ("Worker process
    died unexpectedly") and a stream cut mid-write log tracebacks; so that stays the
    fallback for workers still there after ``timeout``."""
    def joined() -> list[Any]:
        return [ws for ws in scheduler.workers.values() if rank_of_worker(ws.name) is None]

    if not joined():
        return
    logger.info("waiting for %d workers of other jobs to leave before the scheduler closes",
                len(joined()))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while joined() and loop.time() < deadline:
        await asyncio.sleep(0.1)
    left = joined()
    if left:
        logger.warning("%d workers of other jobs did not leave within %gs; closing them",
                       len(left), timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(scheduler.retire_workers(
                workers=[ws.address for ws in left], close_workers=True, remove=True), 5.0)


async def _close_worker(worker: Any, reason: str, timeout: float) -> None:
    """Close the worker (its Nanny and the worker process), waiting at most ``timeout``."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(worker.close(reason=reason), timeout)


def _worker_listen_kwargs(job: RankJob) -> dict[str, Any]:
    """The worker and its nanny on this rank's job address (TLS); the worker's
    unauthenticated HTTP endpoint on loopback only, serving /health alone."""
    assert job.plan is not None
    return {"host": job_ip(job.plan, job.channel.rank, job.settings.interface),
            "dashboard_address": WORKER_HTTP_ADDRESS}


async def run_worker(job: RankJob, stop: StopWatch) -> None:
    """Run one worker (under a Nanny by default); park when it is closed, unpark on request."""
    assert job.plan is not None
    s = job.settings
    got = None
    sched = job.plan.pool_rank  # the scheduler rank, or rank 0 with the outside scheduler's address
    waiter = asyncio.ensure_future(job.channel.recv(Tag.READY, source=sched))
    await _first(stop.wait(), asyncio.shield(waiter))
    if waiter.done():
        got = waiter.result()
    else:
        waiter.cancel()
    if not got or got[1].error:
        if got:
            logger.warning("no worker: %s", got[1].error)
        await stop.wait()
        return
    address = got[1].address
    cls = _import_class(s.worker_class)
    from .clean_leave import LeaveCleanly  # imports distributed: not before HELLO

    try:
        listen = _worker_listen_kwargs(job)
        local_directory = s.local_directory or make_rank_scratch(s.job_directory, job.job_id,
                                                                 job.channel.rank)
    except MPILXError as e:
        logger.error("no worker on this rank: %s", e)
        job.channel.send(sched, Tag.STATE, StateReport(RankState.LOST, str(e)))
        await stop.wait()
        return
    # the worker process a Nanny spawns sets up its logging from this on import
    os.environ["DASK_DISTRIBUTED__ADMIN__LOG_FORMAT"] = (
        f"%(asctime)s dask-mpi-lx[rank {job.channel.rank}/{job.channel.size} worker-process "
        f"@{socket.gethostname()}] %(name)s %(levelname)s: %(message)s")
    prefer_for_oom_killer()
    # the Nanny hands this process's dask config to the worker process
    dask.config.set({"distributed.worker.http.routes": WORKER_HTTP_ROUTES})
    while not stop.event.is_set():
        scrub_process_environ()  # PMIx may set more after MPI_Init: keep worker processes clean
        worker = cls(
            address,
            name=job.plan.worker_name(job.channel.rank),
            nthreads=s.nthreads,
            memory_limit=s.memory_limit,
            local_directory=local_directory,
            **listen,
            protocol=s.protocol,
            security=security_for(job.tls),
            death_timeout=60,
            plugins=(LeaveCleanly(),),
        )
        try:
            await worker
        except Exception as e:  # a lost rank: the pool must not count (or unpark) it
            reason = f"worker failed to start: {type(e).__name__}: {e}"
            logger.error("rank %d on %s: %s; this rank runs no worker until the job ends",
                         job.channel.rank, job.plan.hosts[job.channel.rank], reason)
            job.channel.send(sched, Tag.STATE, StateReport(RankState.LOST, reason))
            await stop.wait()
            break
        else:
            job.channel.send(sched, Tag.STATE, StateReport(RankState.ACTIVE))
            park = asyncio.ensure_future(job.channel.recv(Tag.PARK, source=sched))
            await _first(stop.wait(), worker.finished(), asyncio.shield(park))
            if not park.done():
                park.cancel()
            elif not stop.event.is_set():
                # closed through its Nanny, like at the end of the job: a worker that
                # closes itself races its Nanny's stop-queue thread, which then logs
                # "Worker process died unexpectedly" with a traceback
                logger.info("parking: the scheduler moved this worker's data away")
                await _close_worker(worker, "dask-mpi-lx-park", s.stop_timeout(job.channel.size))
            if stop.event.is_set():
                await _close_worker(worker, stop.reason, 0.3 * s.stop_timeout(job.channel.size))
                break
        job.channel.send(sched, Tag.STATE, StateReport(RankState.PARKED))
        logger.info("worker parked; rank stays up until unparked or stopped")
        unpark = asyncio.ensure_future(job.channel.recv(Tag.UNPARK, source=sched))
        await _first(stop.wait(), asyncio.shield(unpark))
        if not unpark.done():
            unpark.cancel()
            break
        while job.channel.try_recv(Tag.PARK, source=sched):  # meant for the worker just ended
            pass
        logger.info("unparked: starting the worker again")
    if not s.local_directory:
        shutil.rmtree(local_directory, ignore_errors=True)


async def serve_rank(job: RankJob, stop: StopWatch) -> None:
    """Run this rank's role until rank 0 says stop."""
    role = job.role
    if job.endpoint and job.endpoint.hold_until_go and role in (Role.SCHEDULER, Role.WORKER):
        go = asyncio.ensure_future(job.channel.recv(Tag.GO, source=0))
        await _first(stop.wait(), asyncio.shield(go))
        if not go.done():
            go.cancel()
            return
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
