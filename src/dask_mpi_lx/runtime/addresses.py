"""Which local address a Dask rank binds: loopback when the whole job is on one host, else
the address through which this host reaches the job's other hosts (or `--interface`)."""

from __future__ import annotations

import logging
import warnings

from ..exceptions import MPILXError
from .roles import Plan

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Dask's HTTP endpoints of workers are not authenticated: they bind loopback only, on every
# layout, and serve nothing but /health (no metrics, no task data).
WORKER_HTTP_ADDRESS = f"{LOOPBACK}:0"
WORKER_HTTP_ROUTES = ["distributed.http.health"]


class NoJobAddressError(MPILXError):
    """No address of this host reaches the job's other hosts."""


def peer_host(plan: Plan, rank: int) -> str | None:
    """A host of the job other than ``rank``'s, or None on a single-host job."""
    mine = plan.hosts[rank]
    return next((h for h in plan.hosts if h != mine), None)


def job_ip(plan: Plan, rank: int, interface: str | None = None) -> str:
    """The address ``rank``'s Dask listeners bind: the interface's address if one is set,
    loopback on a single-host job (unless the plan must be `reachable` from other hosts:
    then the address of this host's name), else the source address the kernel picks towards
    another host of the job (a UDP ``connect``: no packet is sent). Raises
    `NoJobAddressError`."""
    if interface:
        from distributed.utils import get_ip_interface

        try:
            return get_ip_interface(interface)
        except ValueError as e:
            raise NoJobAddressError(f"interface {interface!r}: {e}") from None
    peer = peer_host(plan, rank)
    if peer is None and not plan.reachable:
        return LOOPBACK
    if peer is None:
        import socket

        peer = socket.gethostname()  # its address is the one other hosts know it by
        try:
            return socket.gethostbyname(peer)
        except OSError as e:
            raise NoJobAddressError(f"cannot resolve this host's name {peer!r}: {e}; set "
                                    "mpi-lx.interface (--interface)") from None
    from distributed.utils import get_ip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # we check the fallback ourselves
        ip = get_ip(peer)
    if ip.startswith("127."):
        raise NoJobAddressError(
            f"no address of {plan.hosts[rank]} reaches {peer} (the job's other host); set "
            "mpi-lx.interface (--interface) to the cluster network's interface")
    return ip
