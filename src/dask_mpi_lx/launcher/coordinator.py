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

    @property
    def ok(self) -> bool:
        return self.address is not None


async def _gather_hellos(channel: Channel, timeout: float) -> dict[int, str]:
    hosts = {0: socket.gethostname()}
    deadline = time.monotonic() + timeout
    while len(hosts) < channel.size:
        got = await channel.recv(Tag.HELLO, timeout=max(0.0, deadline - time.monotonic()))
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
    for r in started.hello_ranks:
        if r != 0:
            channel.send(r, Tag.PLAN, {"plan": started.plan, "tls": started.tls,
                                       "settings": settings, "job_id": job_id})
    if started.plan is None:
        return started
    got = await channel.recv(Tag.READY, source=started.plan.scheduler_rank, timeout=timeout)
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
    """Stop workers first, then the scheduler and the rest; return ranks that did not answer."""
    others = [r for r in range(1, channel.size)]
    plan = started.plan
    first = [r for r in others if plan and r in plan.worker_ranks]
    rest = [r for r in others if r not in first]
    silent = await _stop_ranks(channel, first, reason, timeout * 0.6)
    silent += await _stop_ranks(channel, rest, reason, timeout * 0.4)
    await channel.flush(1.0)
    return sorted(silent)
