"""Reading a process's /proc/<pid>/stat (state, parent, start time); pure, no MPI."""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (``[0]`` is the state, ``[1]``
    the parent pid, ``[19]`` the start time); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return fields or None


def parent_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields and len(fields) > 1 else None


def children_of(ppid: int) -> set[int]:
    """The pids whose parent is ``ppid``."""
    return {int(d) for d in os.listdir("/proc") if d.isdigit() and parent_of(int(d)) == ppid}


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")
