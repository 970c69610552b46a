"""What the stack's daemon starters share (stack.py, pbs.py): saying what happens, a
daemon's pid from its pid file, whether it still runs, waiting until it is ready, and
stopping it by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def say(msg: str) -> None:
    print(f">> {msg}", flush=True)


def pid_in_file(path: Path) -> int | None:
    """The pid a daemon wrote to ``path`` while that process runs; else None."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if running(pid) else None


def stop_daemon(name: str, pid: int | None, timeout: float = 15) -> None:
    """SIGTERM ``pid``, and SIGKILL it if it still runs after ``timeout`` seconds."""
    if not pid or not running(pid):
        return
    say(f"stopping {name} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return
        time.sleep(0.2)
    say(f"{name} did not stop in {timeout:.0f}s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (and our own child is reaped)."""
    with contextlib.suppress(ChildProcessError):  # reaps it if it is our child
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait(what: str, ok: Callable[[], bool], timeout: float = 60, step: float = 0.2) -> None:
    """Until ``ok()``; after ``timeout`` seconds the stack stops with what was not ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(step)
    raise SystemExit(f"{what} not ready after {timeout:.0f}s")
