"""Whether a process listens on a TCP port yet (psutil; no privileges needed for one's own
processes)."""

from __future__ import annotations

import asyncio
import time

import psutil


def listens(pid: int) -> bool:
    """True once ``pid`` holds a listening TCP socket (IPv4 or IPv6)."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN for c in conns)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_until_listening(pid: int, timeout: float, interval: float = 0.05) -> bool:
    """Until ``pid`` listens, it exits, or ``timeout`` passes; True if it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listens(pid):
            return True
        if not _running(pid):
            return False
        await asyncio.sleep(interval)
    return False
