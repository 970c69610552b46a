"""Rank 0's side of the protocol, shared by the launcher and batch-mode MPICluster:
plan the roles, hand out keys, wait for the scheduler; later, stop every rank in order."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace

from ..config import Settings
from ..exceptions import WorldTooSmallError
from ..mpi.channel import Channel
from .addresses import NoJobAddressError, job_ip
from .liveness import RankWatch
from .protocol import Endpoint, Lease, PlanMessage, RankHello, Ready, Stop, Tag
from .roles import Plan, plan_join, plan_roles
from .scratch import owner_tag, safe_job_id
from .tls import JobTLS, new_job_tls

logger = logging.getLogger(__name__)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def default_dashboard_address(plan: Plan, settings: Settings) -> str | None:
    """The dashboard's host:port: the setting, else loopback on rank 0's host (the Jupyter
    server or the batch script's client reaches it there). None (no dashboard) when the
    scheduler is not on rank 0's host: rank 0 alone on its host could not reach it, and an
    unauthenticated page must not listen on the job's network."""
    if settings.dashboard_address:
        return settings.dashboard_address
    return "127.0.0.1:0" if plan.scheduler_shares_rank0_host else None


def dashboard_socket_path(settings: Settings, job_id: str) -> str:
    """An unguessable path for the dashboard's Unix socket in the job directory's parent,
    naming its owner (rank 0) so that the next job sweeps it if SIGKILL left it."""
    parent = settings.job_directory or tempfile.gettempdir()
    name = (f"dask-mpi-lx-{safe_job_id(job_id)}-dashboard-{owner_tag()}-"
            f"{secrets.token_hex(8)}.sock")
    path = os.path.join(parent, name)
    return path if len(path) < 100 else os.path.join("/tmp", name)  # sun_path holds 108 bytes


def plan_endpoint(plan: Plan, settings: Settings, private_dashboard: bool = False,
                  job_id: str = "job", dashboard_mtls: bool = False) -> Endpoint:
    """Where the scheduler listens: loopback on a single-host job, else the job's address
    of rank 0's host (`addresses.job_ip`). When the scheduler shares rank 0's host and
    workers are not awaited, ports are chosen here and the contact address is fixed, so
    the command can start before the scheduler is up.

    With ``private_dashboard`` (a Jupyter server on rank 0 proxies it) and no dashboard
    address set, the dashboard serves only an owner-only Unix socket: no other user of
    the node can reach it, not even on 127.0.0.1. With ``dashboard_mtls`` (serve) it
    listens on the scheduler's address and requires the cluster's client certificate.
    Raises `NoJobAddressError`."""
    mtls = dashboard_mtls and settings.dashboard and settings.tls
    if not plan.scheduler_shares_rank0_host:  # rank 0 alone: the scheduler finds its own
        logger.warning(
            "rank 0 is alone on %s: the scheduler runs on %s (rank %d) with no dashboard; "
            "ask for at least 2 tasks on the first node", plan.hosts[0],
            plan.hosts[plan.scheduler_rank], plan.scheduler_rank)
        return Endpoint(listen_host=None, port=settings.scheduler_port, dashboard_mtls=mtls)
    listen = job_ip(plan, 0, settings.interface)
    socket_path = None
    if private_dashboard and settings.dashboard and not settings.dashboard_address:
        socket_path = dashboard_socket_path(settings, job_id)
    if settings.wait_for_workers:
        return Endpoint(listen_host=listen, port=settings.scheduler_port,
                        dashboard_socket=socket_path, dashboard_mtls=mtls)
    port = settings.scheduler_port or _free_port(listen)
    dashboard = None
    address = f"{listen}:0" if mtls else default_dashboard_address(plan, settings)
    if settings.dashboard and address:
        host, _, dport = address.rpartition(":")
        host = host or "127.0.0.1"
        dashboard = (host, int(dport) or _free_port(host))
    return Endpoint(listen_host=listen, port=port,
                    contact=f"{settings.protocol}://{listen}:{port}",
                    dashboard=dashboard, dashboard_socket=socket_path,
                    hold_until_go=private_dashboard, dashboard_mtls=mtls)


@dataclass
class StartedCluster:
    """What rank 0 knows once the cluster is up, or why there is none."""

    job_id: str
    plan: Plan | None
    tls: JobTLS | None
    address: str | None = None
    dashboard: tuple[str, int] | None = None
    problem: str | None = None
    hello_ranks: tuple[int, ...] = ()
    early: bool = False  # the address was fixed in advance; the scheduler may not be up yet
    workers: int | None = None  # how many workers the scheduler had when it answered
    dashboard_socket: str | None = None
    hold_until_go: bool = False  # the ranks wait for GO before binding any port
    watch: RankWatch = field(default_factory=RankWatch)

    @property
    def ok(self) -> bool:
        return self.address is not None


async def _gather_hellos(channel: Channel, timeout: float, watch: RankWatch) -> dict[int, str]:
    hosts = {0: socket.gethostname()}
    deadline = time.monotonic() + timeout
    while len(hosts) < channel.size:
        got = await channel.recv(Tag.HELLO, timeout=max(0.0, deadline - time.monotonic()),
                                 poll=0.01)
        if got is None:
            break
        hello: RankHello = got[1]
        hosts[got[0]] = hello.host
        watch.add(got[0], hello.host, hello.pid)
    return hosts


async def start_cluster(
    channel: Channel, settings: Settings | None, job_id: str, settings_problem: str | None = None,
    private_dashboard: bool = False, *, tls: JobTLS | None = None, join: str | None = None,
    lease: Lease | None = None, reachable: bool = False, dashboard_mtls: bool = False,
) -> StartedCluster:
    """Plan roles, send every rank its part, and wait for the scheduler's address.
    ``private_dashboard``: see `plan_endpoint`. ``tls``: these keys instead of new ones.
    ``join``: every rank above 0 runs a worker for the scheduler at this address (outside
    the job). ``lease``: when the scheduler ends the job with no cluster object attached.
    ``reachable``: listeners other hosts can reach, even on one host. ``dashboard_mtls``:
    see `plan_endpoint`.

    Never raises for a cluster that cannot start: `StartedCluster.problem` says why.
    """
    timeout = settings.scheduler_timeout if settings else 30.0
    for r in range(1, channel.size):
        channel.send(r, Tag.WELCOME, RankHello(socket.gethostname(), os.getpid()))
    watch = RankWatch()
    hosts = await _gather_hellos(channel, timeout, watch)
    started = StartedCluster(job_id=job_id, plan=None, tls=None, hello_ranks=tuple(sorted(hosts)),
                             watch=watch)
    missing = sorted(set(range(channel.size)) - set(hosts))
    if settings_problem:
        started.problem = settings_problem
    elif missing:
        started.problem = f"ranks {missing} did not report within {timeout:g}s"
    else:
        layout = [hosts[r] for r in range(channel.size)]
        try:
            started.plan = plan_join(layout, safe_job_id(job_id)) if join else plan_roles(layout)
        except WorldTooSmallError as e:
            started.problem = str(e)
    if started.plan and reachable:
        started.plan = replace(started.plan, reachable=True)
    if started.plan and settings and settings.tls:
        started.tls = tls or new_job_tls()
    elif started.plan:
        logger.warning("TLS is OFF (--no-tls): anyone who can reach the scheduler can run code "
                       "as this user")
    endpoint = None
    if started.plan and settings and not join:
        try:
            endpoint = plan_endpoint(started.plan, settings, private_dashboard, job_id,
                                     dashboard_mtls)
        except NoJobAddressError as e:
            started.plan, started.tls, started.problem = None, None, str(e)
    started.dashboard_socket = endpoint.dashboard_socket if endpoint else None
    started.hold_until_go = endpoint.hold_until_go if endpoint else False
    for r in started.hello_ranks:
        if r != 0:
            channel.send(r, Tag.PLAN, PlanMessage(started.plan, started.tls, settings, job_id,
                                                  endpoint, lease))
    if started.plan is None:
        return started
    if join:  # rank 0 hands out the outside scheduler's address itself
        for r in started.plan.worker_ranks:
            channel.send(r, Tag.READY, Ready(address=join))
        started.address = join
        return started
    if endpoint and endpoint.contact:
        started.address, started.dashboard, started.early = endpoint.contact, endpoint.dashboard, True
        return started
    # the scheduler gives up waiting for workers after `timeout` and answers then: wait longer
    return await wait_ready(channel, started, 2 * timeout)


async def wait_ready(channel: Channel, started: StartedCluster, timeout: float) -> StartedCluster:
    """Rank 0 takes the scheduler's READY (address and dashboard, or why it failed)."""
    assert started.plan is not None and started.plan.scheduler_rank is not None
    got = await channel.recv(Tag.READY, source=started.plan.scheduler_rank, timeout=timeout,
                             poll=0.02)
    if got is None:
        started.problem = f"the scheduler did not start within {timeout:g}s"
    elif (ready := got[1]).error:
        started.problem = ready.error
    else:
        started.address = ready.address
        started.workers = ready.workers
        started.dashboard = tuple(ready.dashboard) if ready.dashboard else None
    return started


async def _stop_ranks(channel: Channel, ranks: list[int], reason: str, timeout: float,
                      watch: RankWatch) -> list[int]:
    """Send STOP and wait for each BYE; ranks whose process is gone are not waited for.
    Once a rank was lost before the stop, nobody may call MPI_Finalize (its fence would
    wait for the dead rank)."""
    watch.newly_lost()
    for r in ranks:
        channel.send(r, Tag.STOP, Stop(reason, finalize=not watch.lost))
    waiting = set(ranks) - watch.lost
    deadline = time.monotonic() + timeout
    while waiting:
        got = await channel.recv(Tag.BYE, timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        if got is not None:
            waiting.discard(got[0])
            watch.finished.add(got[0])
        waiting -= watch.exited(waiting)
        if got is None and time.monotonic() >= deadline:
            break
    return sorted(waiting)


async def stop_cluster(channel: Channel, started: StartedCluster, reason: str,
                       timeout: float) -> list[int]:
    """Stop the workers first, then the scheduler and the rest (no worker loses its
    scheduler while it runs); return the ranks that did not answer in time."""
    others = list(range(1, channel.size))
    first = [r for r in others if started.plan and r in started.plan.worker_ranks]
    rest = [r for r in others if r not in first]
    silent = await _stop_ranks(channel, first, reason, timeout * 0.6, started.watch)
    silent += await _stop_ranks(channel, rest, reason, timeout * 0.4, started.watch)
    await channel.flush(1.0)
    return sorted(silent)
