"""Rank 0's child starts as this script, then becomes the command (same pid, `execvp`).

``python -I -S pdeathsig_exec.py PARENT_PID CMD [ARG...]`` asks the kernel for SIGTERM when
its parent (rank 0) dies, even by SIGKILL, so the Jupyter server never outlives the job's
rank 0. This replaces subprocess's ``preexec_fn``, which CPython documents as unsafe in a
process with threads (MPI starts some in rank 0): here the prctl runs in a fresh,
single-threaded interpreter. Standard library only, no package import: it starts fast.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
NOT_STARTED = 127  # the shell's code for a command that cannot run


def die_with_parent(parent: int) -> bool:
    """Get SIGTERM when the parent dies; False if it is already gone (it then never comes)."""
    with contextlib.suppress(AttributeError):  # not Linux: no parent-death signal
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return os.getppid() == parent


def main(argv: list[str]) -> int:
    """Become ``argv[1:]``; return an exit code only when that is impossible."""
    parent, cmd = int(argv[0]), argv[1:]
    if not die_with_parent(parent):
        return 128 + signal.SIGTERM  # as if the parent's death had signalled us
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; the command must not
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        sys.stderr.write(f"dask-mpi-lx: cannot start {cmd[0]!r}: {e.strerror}\n")
    return NOT_STARTED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
