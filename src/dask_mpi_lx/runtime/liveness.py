"""Which ranks of this job are still alive, as far as this host can see (their pids).

Open MPI 4.1 tells no surviving rank that another one died. Ranks on the same host can
still check each other's process: that is how rank 0 learns that a worker rank or the
scheduler was killed, and how the scheduler rank learns that rank 0 is gone.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import psutil


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started (psutil's create time); None if it is gone or a zombie.
    Comparing it catches a pid reused by another process."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.NoSuchProcess:
        return None


@dataclass
class RankProcess:
    """One rank's process as it reported itself (host and pid)."""

    rank: int
    host: str
    pid: int
    start_time: float | None = None

    @property
    def local(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """False only when this host can see that the process is gone."""
        if not self.local:
            return True
        now = process_start_time(self.pid)
        if now is None:
            return False
        if self.start_time is None:
            self.start_time = now
        return now == self.start_time


@dataclass
class RankWatch:
    """The job's rank processes; `newly_lost` says which died since the last call."""

    processes: dict[int, RankProcess] = field(default_factory=dict)
    lost: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)  # said goodbye: their exit is no loss

    def add(self, rank: int, host: str, pid: int) -> None:
        proc = RankProcess(rank, host, pid)
        proc.alive()  # remember its start time now
        self.processes[rank] = proc

    def newly_lost(self) -> list[int]:
        gone = [r for r, p in self.processes.items()
                if r not in self.lost and r not in self.finished and not p.alive()]
        self.lost.update(gone)
        return sorted(gone)

    def exited(self, ranks: set[int]) -> set[int]:
        """Of ``ranks`` (already told to stop), those whose process is gone. They count as
        finished, not lost: a rank may exit before rank 0 has read its goodbye."""
        gone = {r for r in ranks if r in self.processes and not self.processes[r].alive()}
        self.finished |= gone
        return gone

    def describe(self, rank: int) -> str:
        p = self.processes[rank]
        return f"rank {rank} (pid {p.pid} on {p.host})"
