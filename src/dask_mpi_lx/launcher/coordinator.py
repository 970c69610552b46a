"""Rank 0's side of the protocol, shared by the launcher and batch-mode MPICluster:
plan the roles, hand out keys, wait for the scheduler; later, stop every rank in order."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

from ..config import Settings
from ..exceptions import WorldTooSmallError
from ..mpi.channel import Channel
from .jobtls import JobTLS, new_job_tls
from .protocol import Tag
from .roles import Plan, plan_roles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """Where the scheduler listens and what it advertises, decided before it starts when
    rank 0 can (it shares the scheduler's host), so the notebook need not wait for it."""

    listen_host: str | None              # None: every interface
    port: int                            # 0: any free port, chosen by the scheduler
    contact: str | None = None           # the address clients use, known in advance
    dashboard: tuple[str, int] | None = None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def routable_ip() -> str | None:
    """This host's address as other hosts reach it (from its name), or None if its name
    resolves only to a loopback address."""
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def default_dashboard_address(plan: Plan, settings: Settings) -> str:
    """The dashboard's host:port: the setting, else loopback when the scheduler shares rank
    0's host (the Jupyter server proxies it from there), else every interface."""
    if settings.dashboard_address:
        return settings.dashboard_address
    return "127.0.0.1:0" if plan.scheduler_shares_rank0_host else ":0"


def plan_endpoint(plan: Plan, settings: Settings) -> Endpoint:
    """Single-host jobs listen on 127.0.0.1 only (unless an interface is asked for). Without
    wait-for-workers, and with the scheduler on rank 0's host, ports are chosen here and
    the contact address is fixed, so the command can start before the scheduler is up."""
    listen = "127.0.0.1" if plan.single_host and not settings.interface else None
    if settings.wait_for_workers or not plan.scheduler_shares_rank0_host:
        return Endpoint(listen_host=listen, port=settings.scheduler_port)
    if settings.interface:
        from distributed.utils import get_ip_interface

        ip = get_ip_interface(settings.interface)
    else:
        ip = listen or routable_ip()
    if ip is None:  # no address to announce in advance: the scheduler picks and reports it
        return Endpoint(listen_host=listen, port=settings.scheduler_port)
    port = settings.scheduler_port or _free_port(listen or "")
    dashboard = None
    if settings.dashboard:
        host, _, dport = default_dashboard_address(plan, settings).rpartition(":")
        host = host or "127.0.0.1"
        dashboard = (host, int(dport) or _free_port(host))
    return Endpoint(listen_host=listen, port=port, contact=f"{settings.protocol}://{ip}:{port}",
                    dashboard=dashboard)


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

    @property
    def ok(self) -> bool:
        return self.address is not None


async def _gather_hellos(channel: Channel, timeout: float) -> dict[int, str]:
    hosts = {0: socket.gethostname()}
    deadline = time.monotonic() + timeout
    while len(hosts) < channel.size:
        got = await channel.recv(Tag.HELLO, timeout=max(0.0, deadline - time.monotonic()),
                                 poll=0.01)
        if got is None:
            break
        hosts[got[0]] = got[1]["host"]
    return hosts


async def start_cluster(
    channel: Channel, settings: Settings | None, job_id: str, settings_problem: str | None = None
) -> StartedCluster:
    """Plan roles, send every rank its part, and wait for the scheduler's address.

    Never raises for a cluster that cannot start: `StartedCluster.problem` says why.
    """
    timeout = settings.scheduler_timeout if settings else 30.0
    hosts = await _gather_hellos(channel, timeout)
    started = StartedCluster(job_id=job_id, plan=None, tls=None, hello_ranks=tuple(sorted(hosts)))
    missing = sorted(set(range(channel.size)) - set(hosts))
    if settings_problem:
        started.problem = settings_problem
    elif missing:
        started.problem = f"ranks {missing} did not report within {timeout:g}s"
    else:
        try:
            started.plan = plan_roles([hosts[r] for r in range(channel.size)])
        except WorldTooSmallError as e:
            started.problem = str(e)
    if started.plan and settings and settings.tls:
        started.tls = new_job_tls()
    elif started.plan:
        logger.warning("TLS is OFF (--no-tls): anyone who can reach the scheduler can run code "
                       "as this user")
    endpoint = plan_endpoint(started.plan, settings) if started.plan and settings else None
    for r in started.hello_ranks:
        if r != 0:
            channel.send(r, Tag.PLAN, {"plan": started.plan, "tls": started.tls,
                                       "settings": settings, "job_id": job_id,
                                       "endpoint": endpoint})
    if started.plan is None:
        return started
    if endpoint and endpoint.contact:
        started.address, started.dashboard, started.early = endpoint.contact, endpoint.dashboard, True
        return started
    return await wait_ready(channel, started, timeout)


async def wait_ready(channel: Channel, started: StartedCluster, timeout: float) -> StartedCluster:
    """Rank 0 takes the scheduler's READY (address and dashboard, or why it failed)."""
    assert started.plan is not None
    got = await channel.recv(Tag.READY, source=started.plan.scheduler_rank, timeout=timeout,
                             poll=0.02)
    if got is None:
        started.problem = f"the scheduler did not start within {timeout:g}s"
    elif "error" in got[1]:
        started.problem = got[1]["error"]
    else:
        started.address = got[1]["address"]
        started.dashboard = tuple(got[1]["dashboard"]) if got[1]["dashboard"] else None
    return started


async def _stop_ranks(channel: Channel, ranks: list[int], reason: str, timeout: float) -> list[int]:
    for r in ranks:
        channel.send(r, Tag.STOP, {"reason": reason})
    waiting = set(ranks)
    deadline = time.monotonic() + timeout
    while waiting:
        got = await channel.recv(Tag.BYE, timeout=max(0.0, deadline - time.monotonic()))
        if got is None:
            break
        waiting.discard(got[0])
    return sorted(waiting)


async def stop_cluster(channel: Channel, started: StartedCluster, reason: str,
                       timeout: float) -> list[int]:
    """Stop the workers first, then the scheduler and the rest (no worker loses its
    scheduler while it runs); return the ranks that did not answer in time."""
    others = list(range(1, channel.size))
    first = [r for r in others if started.plan and r in started.plan.worker_ranks]
    rest = [r for r in others if r not in first]
    if started.plan:
        channel.send(started.plan.scheduler_rank, Tag.DRAINING, {"reason": reason})
    silent = await _stop_ranks(channel, first, reason, timeout * 0.6)
    silent += await _stop_ranks(channel, rest, reason, timeout * 0.4)
    await channel.flush(1.0)
    return sorted(silent)
