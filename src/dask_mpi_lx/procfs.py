"""A process's parent, children and liveness (psutil); pure, no MPI.

Kept for `mpi/start_watchdog.py`; new code calls psutil directly."""

from __future__ import annotations

import psutil


def parent_of(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def children_of(ppid: int) -> set[int]:
    """The pids whose parent is ``ppid``."""
    try:
        return {c.pid for c in psutil.Process(ppid).children()}
    except psutil.Error:
        return set()


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
