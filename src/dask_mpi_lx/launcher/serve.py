"""Rank 0 under `dask-mpi-lx serve`: keep a job whose ranks are only a Dask cluster, for a
client outside the job (`MPIJobCluster`, or a notebook job bursting).

The first job of a cluster runs the scheduler (rank 1) and workers, and writes the
scheduler's contact into the cluster directory; a job started with ``--join`` runs workers
for the scheduler named there. The job ends on a signal (scancel, walltime), when no cluster
object has been attached for the lease (the client's kernel died), when the scheduler is
gone, or, for a joining job, when every one of its workers has been closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from dataclasses import dataclass

from ..config import Settings
from ..exceptions import MPILXError
from ..mpi.channel import Channel
from ..mpi.environ import job_id as current_job_id
from ..runtime.cluster_dir import ClusterDir, Contact
from ..runtime.coordinator import StartedCluster, start_cluster, stop_cluster, wait_ready
from ..runtime.dask_ranks import joined_leave_budget
from ..runtime.protocol import Lease, RankState, StateReport, Tag
from .supervisor import JobEnd, watch_ranks

logger = logging.getLogger(__name__)


def is_loopback(address: str) -> bool:
    """Whether a Dask address ("tls://127.0.0.1:8786") is on a loopback network."""
    import ipaddress

    from distributed.comm import get_address_host

    try:
        return ipaddress.ip_address(get_address_host(address)).is_loopback
    except ValueError:
        return False

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
CONTACT_CHECK_INTERVAL = 1.0  # seconds between a joining job's looks at the contact file


@dataclass(frozen=True)
class ServeOptions:
    """What `dask-mpi-lx serve` was asked, besides the `mpi-lx` settings."""

    cluster_dir: str
    join: bool = False
    lease: float = 30.0
    attach_grace: float = 120.0
    join_timeout: float = 300.0


async def _join_address(directory: ClusterDir, timeout: float, stopped: asyncio.Event) -> str:
    """The first job's scheduler address, once it has written it (it may start later)."""
    deadline = time.monotonic() + timeout
    while not stopped.is_set():
        contact = directory.read_contact()
        if contact is not None:
            return contact.address
        if time.monotonic() >= deadline:
            raise MPILXError(f"no scheduler address appeared in {directory.path} within "
                             f"{timeout:g}s (the cluster's first job is not running)")
        await asyncio.sleep(1.0)
    raise MPILXError("stopped while waiting for the scheduler's address")


async def _workers_all_closed(channel: Channel, ranks: tuple[int, ...]) -> str:
    """A joining job: until every worker rank has reported its worker closed (the scheduler
    closed them, or they could not start)."""
    done: set[int] = set()
    while not set(ranks) <= done:
        got = await channel.recv(Tag.STATE)
        if got is None:
            continue
        report = StateReport.parse(got[1])
        if report.state in (RankState.PARKED, RankState.LOST):
            done.add(got[0])
        elif report.state is RankState.ACTIVE:
            done.discard(got[0])
    return "every worker of this job was closed"


async def _contact_gone(directory: ClusterDir, address: str) -> str:
    """A joining job: until the first job takes its scheduler's contact back (it is
    ending); then this job stops its workers before that scheduler closes."""
    while (contact := directory.read_contact()) is not None and contact.address == address:
        await asyncio.sleep(CONTACT_CHECK_INTERVAL)
    return "the cluster's scheduler is ending"


async def _expired(channel: Channel, scheduler_rank: int) -> str:
    got = await channel.recv(Tag.EXPIRED, source=scheduler_rank)
    return got[1].reason if got else "expired"


async def _wait_for_end(channel: Channel, started: StartedCluster, settings: Settings,
                        stopped: asyncio.Event, directory: ClusterDir) -> str:
    plan = started.plan
    assert plan is not None
    waits = {asyncio.ensure_future(stopped.wait()): "stopped by a signal",
             asyncio.ensure_future(watch_ranks(channel, started, settings)): "the scheduler is gone"}
    if plan.scheduler_rank is None:
        waits[asyncio.ensure_future(_workers_all_closed(channel, plan.worker_ranks))] = ""
        assert started.address is not None
        waits[asyncio.ensure_future(_contact_gone(directory, started.address))] = ""
    else:
        waits[asyncio.ensure_future(_expired(channel, plan.scheduler_rank))] = ""
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    task = done.pop()
    return waits[task] or task.result()


async def serve(channel: Channel, settings: Settings, options: ServeOptions) -> JobEnd:
    """Start the cluster (or the joining workers), publish the scheduler's contact, keep the
    job until it should end, then stop every rank in order."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopped.set)
    job_id = current_job_id()
    directory = ClusterDir(options.cluster_dir)
    problem, tls, join = None, None, None
    try:
        tls = directory.load_tls() if settings.tls else None
        if settings.tls and tls is None:
            raise MPILXError(f"no TLS keys in {directory.path} (the client writes them)")
        if options.join:
            join = await _join_address(directory, options.join_timeout, stopped)
    except MPILXError as e:
        problem = str(e)
    # the client attaches from its own host, joining workers from theirs: no loopback; the
    # dashboard beside the scheduler answers only holders of the cluster's key (mutual TLS)
    quick = dataclasses.replace(settings, wait_for_workers=False, dashboard_address=None)
    started = await start_cluster(channel, quick, job_id, problem, tls=tls, join=join,
                                  lease=None if options.join else
                                  Lease(options.lease, options.attach_grace), reachable=True,
                                  dashboard_mtls=True)
    rc = 0
    if started.ok and not options.join:
        started = await wait_ready(channel, dataclasses.replace(started, address=None),
                                   2 * settings.scheduler_timeout)
    if started.ok:
        if not options.join:
            assert started.address is not None and started.plan is not None
            dashboard = "{}:{}".format(*started.dashboard) if started.dashboard else ""
            directory.write_contact(Contact(job_id, started.address,
                                            tuple(sorted(set(started.plan.hosts))), dashboard))
            if is_loopback(started.address):
                logger.warning("job %s: the scheduler listens on %s, which only this host "
                               "reaches (this host's name resolves to loopback); set "
                               "mpi-lx.interface to the cluster network's interface", job_id,
                               started.address)
        what = f"workers for {join}" if join else f"a scheduler at {started.address}"
        logger.info("job %s serves %s (%d worker ranks); cluster directory %s", job_id, what,
                    len(started.plan.worker_ranks), directory.path)
        reason = await _wait_for_end(channel, started, settings, stopped, directory)
        logger.info("ending job %s: %s", job_id, reason)
    else:
        logger.error("no Dask cluster in job %s: %s", job_id, started.problem)
        rc = 1
    if not options.join:  # first, so that joining jobs start stopping their workers now
        directory.remove_contact(job_id)
    budget = settings.stop_timeout(channel.size) + (0 if options.join else joined_leave_budget())
    silent = await stop_cluster(channel, started, "serve-end", budget)
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)
    return JobEnd(rc, silent, sorted(started.watch.lost))

