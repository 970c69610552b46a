"""Two helpers the stack's daemon starters share (stack.py, pbs.py): whether a pid still
runs, and waiting for a daemon to be ready."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path


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
