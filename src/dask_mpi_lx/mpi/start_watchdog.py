"""End this process if MPI does not start in time.

MPI_Init waits for every rank of the job. When one rank is killed while starting (under
Open MPI's --enable-recovery nothing else ends the job), the others would wait inside
MPI_Init until walltime, holding the GIL, so no thread or Python signal handler of theirs
can act. A forked watcher process (forked before MPI exists) can: it kills this process
when the time is up, or at once when a sibling rank on this host (a process of the same
launcher) ends before MPI started, after saying why.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Iterator

import psutil

CHECK_INTERVAL = 0.5
STARTED_WITHIN = 5.0  # the launcher has started every local rank by then


def _give_up(parent: int, why: str) -> None:
    os.write(2, f"dask-mpi-lx: {why}; leaving\n".encode())
    with contextlib.suppress(ProcessLookupError):
        os.kill(parent, signal.SIGKILL)


def _local_size() -> int | None:
    """How many ranks the launcher starts on this host, as it tells its processes."""
    for name in ("OMPI_COMM_WORLD_LOCAL_SIZE",):  # set by mpirun before the rank starts
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _parent_of(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def _children_of(pid: int) -> set[int]:
    try:
        return {c.pid for c in psutil.Process(pid).children()}
    except psutil.Error:
        return set()


def _watch(read_fd: int, parent: int, timeout: float) -> None:
    launcher = _parent_of(parent)  # mpirun/orted/slurmstepd: its children are the ranks here
    expected = _local_size()
    seen: set[int] = set()
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if launcher and launcher > 1:
            ranks = _children_of(launcher)
            gone = seen - ranks
            missing = (expected is not None and len(ranks) < expected
                       and time.monotonic() - start > STARTED_WITHIN)
            if gone or missing:
                what = f"rank process {min(gone)}" if gone else "a rank process"
                _give_up(parent, f"{what} on this host ended while MPI was starting, so MPI "
                                 "cannot start")
                return
            seen |= ranks
        ready, _, _ = select.select([read_fd], [], [], CHECK_INTERVAL)
        if ready:
            return
    _give_up(parent, f"MPI did not start within {timeout:g}s (a rank died while starting?)")


@contextlib.contextmanager
def mpi_start_watchdog(timeout: float) -> Iterator[None]:
    """Run the body (which starts MPI); kill this process if it takes over ``timeout`` s.

    Only under Open MPI's mpirun, the one runtime that keeps a job alive after a rank died
    (--enable-recovery): MPICH's Hydra and srun end the whole job themselves."""
    if "OMPI_COMM_WORLD_SIZE" not in os.environ:
        yield
        return
    read_fd, write_fd = os.pipe()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the watcher: holds none of the rank's files (an MPI launcher's PMI socket)
        try:
            os.closerange(3, read_fd)
            os.closerange(read_fd + 1, os.sysconf("SC_OPEN_MAX"))
            _watch(read_fd, os.getppid(), timeout)
        finally:
            os._exit(0)
    os.close(read_fd)
    try:
        yield
    finally:
        os.close(write_fd)  # the watcher wakes up (EOF) and leaves
        os.waitpid(pid, 0)
