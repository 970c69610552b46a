"""Whether a process listens on a TCP port yet, read from /proc (no privileges needed for
one's own processes)."""

from __future__ import annotations

import asyncio
import os
import time

LISTEN = "0A"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def listens(pid: int) -> bool:
    """True once ``pid`` holds a listening TCP socket (IPv4 or IPv6)."""
    inodes = _socket_inodes(pid)
    if not inodes:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == LISTEN and fields[9] in inodes:
                        return True
        except OSError:
            continue
    return False


async def wait_until_listening(pid: int, timeout: float, interval: float = 0.05) -> bool:
    """Until ``pid`` listens, it exits, or ``timeout`` passes; True if it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listens(pid):
            return True
        if not os.path.exists(f"/proc/{pid}"):
            return False
        await asyncio.sleep(interval)
    return False
