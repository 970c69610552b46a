"""Rank 0 under `dask-mpi-lx launch`: run the command (the Jupyter server) next to the cluster."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from ..config import Settings
from ..mpi.channel import Channel
from ..mpi.environ import job_id as current_job_id
from .coordinator import StartedCluster, start_cluster, stop_cluster
from .jobdir import JobDirectory
from .notebook_env import JobCluster, child_environment, job_dask_config

logger = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _prepare_job_files(started: StartedCluster, settings: Settings) -> JobDirectory:
    jobdir = JobDirectory(settings.job_directory, started.job_id)
    tls_paths = jobdir.write_tls(started.tls) if started.tls else None
    assert started.plan is not None and started.address is not None
    cluster = JobCluster(job_id=started.job_id, address=started.address,
                         dashboard=started.dashboard,
                         n_workers=len(started.plan.worker_ranks), tls_paths=tls_paths)
    jobdir.write_dask_config(
        job_dask_config(cluster, os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
    )
    return jobdir


async def _report_ready(channel: Channel, started: StartedCluster, settings: Settings) -> None:
    """In early mode the command already runs; say in the log when the scheduler is up."""
    from .coordinator import wait_ready

    t0 = time.monotonic()
    done = await wait_ready(channel, StartedCluster(job_id=started.job_id, plan=started.plan,
                                                    tls=None), settings.scheduler_timeout)
    if done.ok:
        logger.info("Dask cluster ready at %s, %.2fs after the command started", done.address,
                    time.monotonic() - t0)
    else:
        logger.error("the Dask cluster at %s did not start: %s", started.address, done.problem)


async def _run_child(cmd: list[str], env: dict[str, str]) -> int:
    try:
        child = await asyncio.create_subprocess_exec(*cmd, env=env)
    except OSError as e:
        logger.error("cannot start %r: %s", cmd[0], e.strerror or e)
        return 127
    logger.info("started %s (pid %d)", cmd[0], child.pid)
    loop = asyncio.get_running_loop()

    def forward(sig: signal.Signals) -> None:
        logger.info("forwarding %s to pid %d", sig.name, child.pid)
        if child.returncode is None:
            child.send_signal(sig)

    for sig in FORWARDED:
        loop.add_signal_handler(sig, forward, sig)
    rc = await child.wait()
    for sig in FORWARDED:
        loop.remove_signal_handler(sig)
    return rc if rc >= 0 else 128 - rc


async def supervise(channel: Channel, settings: Settings | None, cmd: list[str],
                    settings_problem: str | None = None) -> tuple[int, list[int]]:
    """Start the cluster, run ``cmd`` with its address, stop the cluster when ``cmd`` ends.

    Returns the command's exit code and the ranks that did not stop in time.
    """
    t0 = time.monotonic()
    started = StartedCluster(job_id=current_job_id(), plan=None, tls=None)
    if channel.size > 1:
        started = await start_cluster(channel, settings, started.job_id, settings_problem)
    else:
        started.problem = settings_problem or "the MPI world has 1 rank (run under mpirun -np N)"
    jobdir = None
    if started.ok:
        assert settings is not None
        try:
            jobdir = _prepare_job_files(started, settings)
        except Exception as e:
            started.problem = f"cannot write the job's files: {e}"
    watcher = None
    if jobdir and started.early:
        logger.info("Dask cluster starting at %s (%d workers), joining while the command "
                    "starts; job files in %s", started.address, len(started.plan.worker_ranks),
                    jobdir.path)
        env = child_environment(os.environ, started.address, str(jobdir.dask_config_dir))
        watcher = asyncio.ensure_future(_report_ready(channel, started, settings))
    elif jobdir:
        logger.info("Dask cluster ready at %s (%d workers); job files in %s", started.address,
                    len(started.plan.worker_ranks), jobdir.path)
        env = child_environment(os.environ, started.address, str(jobdir.dask_config_dir))
    else:
        logger.warning("no Dask cluster for this job: %s; starting the command anyway",
                       started.problem)
        env = child_environment(os.environ, None, None)
    logger.info("starting the command %.2fs after launch", time.monotonic() - t0)
    rc = await _run_child(cmd, env)
    logger.info("command exited with code %d; stopping the cluster", rc)
    if watcher:
        watcher.cancel()
    if jobdir:  # first: after a SIGTERM, mpirun SIGKILLs every rank about a second later
        jobdir.remove()
    t1 = time.monotonic()
    timeout = settings.stop_timeout(channel.size) if settings else 4.0 + 0.15 * channel.size
    silent = await stop_cluster(channel, started, f"notebook-exit-{rc}", timeout)
    logger.info("cluster stopped in %.2fs%s", time.monotonic() - t1,
                f"; ranks {silent} did not answer" if silent else "")
    return rc, silent
