"""Rank 0 under `dask-mpi-lx launch`: run the command (the Jupyter server) next to the cluster."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings, burst_enabled
from ..mpi.channel import Channel
from ..mpi.environ import job_id as current_job_id
from ..runtime.coordinator import StartedCluster, start_cluster, stop_cluster
from ..runtime.dashboard_socket import remove_socket
from ..runtime.protocol import Go, Lost, Stop, Tag
from ..runtime.scratch import remove_rank_scratch
from .jobdir import JobDirectory
from .notebook_env import JobCluster, child_environment, job_dask_config
from .port_watch import wait_until_listening

logger = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PDEATHSIG_EXEC = Path(__file__).with_name("pdeathsig_exec.py")
LOST_CHECK_INTERVAL = 2.0  # seconds between checks of the ranks' processes
GO_TIMEOUT = 30.0  # the Dask ranks start at the latest this long after the command


@dataclass
class JobEnd:
    """How the job ended on rank 0: the command's exit code, the ranks that did not answer
    the stop, and the ranks that died while the job ran."""

    rc: int
    silent: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)


async def watch_ranks(channel: Channel, started: StartedCluster, settings: Settings) -> None:
    """Say at once when a rank dies, and keep the rest of the job working without it: a
    dead worker rank leaves the pool; a dead scheduler ends the cluster, not the notebook.
    A dead rank's spill directory on this host is removed (it could not do it itself)."""
    plan = started.plan
    assert plan is not None
    while True:
        await asyncio.sleep(LOST_CHECK_INTERVAL)
        lost = started.watch.newly_lost()
        if not lost:
            continue
        if not settings.local_directory:
            remove_rank_scratch(settings.job_directory, started.job_id,
                                [r for r in lost if started.watch.processes[r].local])
        for r in lost:
            role = plan.role(r).value
            logger.error("%s, a Dask %s, died (killed or out of memory?); the notebook goes on",
                         started.watch.describe(r), role)
        if plan.scheduler_rank is None:  # workers of an outside scheduler: nobody to tell
            continue
        if plan.scheduler_rank in lost:
            logger.error("the Dask scheduler is gone: this job's cluster has ended (Client "
                         "calls fail); the worker ranks stop now; restart the server for a "
                         "new cluster")
            for r in plan.worker_ranks:
                if r not in started.watch.lost:
                    channel.send(r, Tag.STOP, Stop("scheduler-lost", finalize=False))
            return
        channel.send(plan.scheduler_rank, Tag.LOST, Lost(tuple(lost)))


def _prepare_job_files(started: StartedCluster, settings: Settings, job: _Job) -> JobDirectory:
    jobdir = job.jobdir = JobDirectory(settings.job_directory, started.job_id)
    tls_paths = jobdir.write_tls(started.tls) if started.tls else None
    assert started.plan is not None and started.address is not None
    cluster = JobCluster(job_id=started.job_id, address=started.address,
                         dashboard=started.dashboard,
                         n_workers=len(started.plan.worker_ranks), tls_paths=tls_paths,
                         dashboard_socket=started.dashboard_socket)
    jobdir.write_dask_config(job_dask_config(
        cluster, os.environ.get("JUPYTERHUB_SERVICE_PREFIX"), str(jobdir.make_scratch())))
    return jobdir


async def _report_ready(channel: Channel, started: StartedCluster, settings: Settings) -> None:
    """In early mode the command already runs; say in the log when the scheduler is up."""
    from ..runtime.coordinator import wait_ready

    t0 = time.monotonic()
    done = await wait_ready(channel, StartedCluster(job_id=started.job_id, plan=started.plan,
                                                    tls=None), settings.scheduler_timeout)
    if done.ok:
        logger.info("Dask cluster ready at %s, %.2fs after the command started", done.address,
                    time.monotonic() - t0)
    else:
        logger.error("the Dask cluster at %s did not start: %s", started.address, done.problem)


class Signals:
    """SIGTERM/SIGINT/SIGHUP on rank 0, handled from the first moment of the job: while the
    cluster starts they cancel the start-up (`startup`) and the command never runs; once
    the command runs they are forwarded to it, and the job's files go at once (`on_stop`:
    scancel and walltime SIGKILL everything a few seconds later, maybe before the command
    has ended). Either way the job's files are removed."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.startup: asyncio.Future | None = None
        self.child: asyncio.subprocess.Process | None = None
        self.on_stop: Callable[[], Any] | None = None
        self._loop = asyncio.get_running_loop()
        for sig in FORWARDED:
            self._loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.child is not None:
            if self.child.returncode is None:
                logger.info("forwarding %s to pid %d", sig.name, self.child.pid)
                self.child.send_signal(sig)
            if self.on_stop is not None:
                self.on_stop()
            return
        if self.received is None:
            logger.info("got %s before the command started; stopping the job", sig.name)
            self.received = sig
        if self.startup is not None:
            self.startup.cancel()

    def close(self) -> None:
        for sig in FORWARDED:
            self._loop.remove_signal_handler(sig)


def child_argv(cmd: list[str]) -> list[str]:
    """``cmd`` behind `pdeathsig_exec`: it gets SIGTERM when rank 0 dies (even by SIGKILL),
    so the Jupyter server never outlives the job's rank 0 and answers the hub half-alive."""
    return [sys.executable, "-I", "-S", str(PDEATHSIG_EXEC), str(os.getpid()), *cmd]


async def _release_ranks_once_listening(channel: Channel, pid: int | None) -> None:
    """Send GO to every rank once the command (Jupyter) listens on its port, or has
    failed to within GO_TIMEOUT: only then do the Dask ranks bind theirs."""
    waited = time.monotonic()
    listening = await wait_until_listening(pid, GO_TIMEOUT) if pid else False
    logger.info("%s after %.2fs; the Dask ranks start now",
                "the command listens on its port" if listening else "no port of the command seen",
                time.monotonic() - waited)
    for r in range(1, channel.size):
        channel.send(r, Tag.GO, Go())


async def _run_child(cmd: list[str], env: dict[str, str], signals: Signals,
                     on_start: Callable[[int | None], Any] | None = None) -> int:
    problem = None
    if not shutil.which(cmd[0], path=env.get("PATH", os.defpath)):
        problem = "no such executable file (on the command's PATH)"
    else:
        try:
            signals.child = await asyncio.create_subprocess_exec(*child_argv(cmd), env=env)
        except OSError as e:
            problem = e.strerror or str(e)
    if signals.child is None:
        logger.error("cannot start %r: %s", cmd[0], problem)
        if on_start:
            on_start(None)
        return 127
    logger.info("started %s (pid %d)", cmd[0], signals.child.pid)
    if on_start:
        on_start(signals.child.pid)
    rc = await signals.child.wait()
    return rc if rc >= 0 else 128 - rc


@dataclass
class _Job:
    """What rank 0 must clean up, filled in as it appears."""

    started: StartedCluster
    jobdir: JobDirectory | None = None
    tasks: list[asyncio.Future] = field(default_factory=list)


async def supervise(channel: Channel, settings: Settings | None, cmd: list[str],
                    settings_problem: str | None = None) -> JobEnd:
    """Start the cluster, run ``cmd`` with its address, stop the cluster when ``cmd`` ends.
    A signal before ``cmd`` runs ends the start-up; the job's files go on every path."""
    signals = Signals()
    job = _Job(StartedCluster(job_id=current_job_id(), plan=None, tls=None))
    signals.on_stop = lambda: job.jobdir.remove() if job.jobdir else None
    try:
        try:
            rc = await _start_and_run(channel, settings, cmd, settings_problem, signals, job)
        finally:
            for task in job.tasks:
                task.cancel()
            if job.jobdir:  # first: after a SIGTERM, mpirun SIGKILLs every rank a second later
                job.jobdir.remove()
            remove_socket(job.started.dashboard_socket)
        t1 = time.monotonic()
        timeout = settings.stop_timeout(channel.size) if settings else 4.0 + 0.15 * channel.size
        if burst_enabled():  # burst jobs stop their workers first; the scheduler waits for them
            from ..jobs.burst import end_of_job
            from ..runtime.dask_ranks import joined_leave_budget

            await end_of_job()
            timeout += joined_leave_budget()
        silent = await stop_cluster(channel, job.started, f"notebook-exit-{rc}", timeout)
        logger.info("cluster stopped in %.2fs%s", time.monotonic() - t1,
                    f"; ranks {silent} did not answer" if silent else "")
    finally:
        signals.close()
    return JobEnd(rc, silent, sorted(job.started.watch.lost))


async def _start_up(channel: Channel, settings: Settings | None, started: StartedCluster,
                    settings_problem: str | None, signals: Signals) -> StartedCluster:
    """The cluster's start-up; a signal cancels it (the job then has no cluster)."""
    if channel.size <= 1:
        started.problem = settings_problem or "the MPI world has 1 rank (run under mpirun -np N)"
        return started
    # behind a hub the Jupyter server proxies the dashboard: no TCP port for it at all
    behind_hub = bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
    signals.startup = asyncio.ensure_future(start_cluster(
        channel, settings, started.job_id, settings_problem, private_dashboard=behind_hub,
        reachable=burst_enabled()))  # burst jobs on other hosts reach its listeners
    try:
        return await signals.startup
    except asyncio.CancelledError:
        if signals.received is None:
            raise
        started.problem = f"stopped by {signals.received.name} while starting"
        return started
    finally:
        signals.startup = None


async def _start_and_run(channel: Channel, settings: Settings | None, cmd: list[str],
                         settings_problem: str | None, signals: Signals, job: _Job) -> int:
    """Start the cluster and the job's files, run the command; its exit code."""
    t0 = time.monotonic()
    started = job.started = await _start_up(channel, settings, job.started, settings_problem,
                                            signals)
    if started.ok and not signals.received:
        assert settings is not None
        try:
            job.jobdir = _prepare_job_files(started, settings, job)
        except Exception as e:
            started.problem = f"cannot write the job's files: {e}"
            if job.jobdir:
                job.jobdir.remove()
                job.jobdir = None
    if signals.received:  # stopped while starting: the command never runs
        return 128 + signals.received
    if job.jobdir and started.early:
        logger.info("Dask cluster starting at %s (%d workers), joining while the command "
                    "starts; job files in %s", started.address, len(started.plan.worker_ranks),
                    job.jobdir.path)
        env = child_environment(os.environ, started.address, str(job.jobdir.dask_config_dir))
        job.tasks.append(asyncio.ensure_future(_report_ready(channel, started, settings)))
    elif job.jobdir:
        planned = len(started.plan.worker_ranks)
        workers = planned if started.workers is None else started.workers
        if workers < planned:
            logger.warning("only %d of %d worker ranks joined within the scheduler timeout; "
                           "the command starts with %d", workers, planned, workers)
        logger.info("Dask cluster ready at %s (%d workers); job files in %s", started.address,
                    workers, job.jobdir.path)
        env = child_environment(os.environ, started.address, str(job.jobdir.dask_config_dir))
    else:
        logger.warning("no Dask cluster for this job: %s; starting the command anyway",
                       started.problem)
        env = child_environment(os.environ, None, None)
    logger.info("starting the command %.2fs after launch", time.monotonic() - t0)
    if started.plan and settings:
        job.tasks.append(asyncio.ensure_future(watch_ranks(channel, started, settings)))

    def on_start(pid: int | None) -> None:
        if started.hold_until_go:
            job.tasks.append(asyncio.ensure_future(_release_ranks_once_listening(channel, pid)))

    rc = await _run_child(cmd, env, signals, on_start)
    logger.info("command exited with code %d; stopping the cluster", rc)
    return rc
