"""Owner-tagged private directories on a host: the Dask ranks' scratch (spill) directories,
and the names and sweep that `launcher/jobdir.py`'s job directory shares.

Every such directory (the job directory, the ranks' scratch directories) carries its owner
in its name: ``dask-mpi-lx-<job>-<label>-<pid>.<start>@<host>-<random>``.
A process killed by SIGKILL cannot remove its directory; the next job of the same user on
the same host sees that the owner is gone (`sweep_leftovers`) and removes it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

from ..exceptions import MPILXError

logger = logging.getLogger(__name__)

PREFIX = "dask-mpi-lx-"
#: what `owner_tag` adds to a name (job and scratch directories, the dashboard's socket);
#: the rest is random
OWNED = re.compile(r"^dask-mpi-lx-.+-(?:job|rank\d+|dashboard)-(?P<pid>\d+)\.(?P<start>\d+)"
                   r"@(?P<host>[A-Za-z0-9_.-]+)-[a-z0-9_]+(?:\.sock)?$")


def safe_job_id(job_id: str) -> str:
    """The job id as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)


def _start_stamp(proc: psutil.Process) -> int:
    """A process's start time in clock ticks (1/100 s): with the pid, it names one process."""
    return round(proc.create_time() * 100)


def owner_tag(pid: int | None = None) -> str:
    """``<pid>.<start>@<host>`` of this process (or ``pid``), as directory names carry it."""
    proc = psutil.Process(pid)
    return f"{proc.pid}.{_start_stamp(proc)}@{safe_job_id(socket.gethostname())}"


def owner_alive(pid: int, start: int) -> bool:
    """False only when process ``pid`` started at ``start`` is certainly gone (no such
    pid, a zombie, or a newer process that reuses the pid)."""
    try:
        proc = psutil.Process(pid)
        return abs(_start_stamp(proc) - start) <= 1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # cannot tell: leave it
        return True


def owned_entries(base: Path, pattern: str) -> Iterator[tuple[Path, os.stat_result, bool]]:
    """This user's entries under ``base`` matching ``pattern`` whose names carry an owner
    made on this host (a shared ``base`` may hold other hosts' live jobs), not followed
    through links: ``(path, lstat, whether the owner still runs)``."""
    host, uid = safe_job_id(socket.gethostname()), os.getuid()
    try:
        candidates = list(base.glob(pattern))
    except OSError:
        return
    for path in candidates:
        m = OWNED.match(path.name)
        if not m or m["host"] != host:
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        if st.st_uid == uid:
            yield path, st, owner_alive(int(m["pid"]), int(m["start"]))


def sweep_leftovers(parent: str | None) -> list[Path]:
    """Remove this user's job and spill directories and dashboard sockets under ``parent``
    (default: the temp directory) made on this host by a process that no longer runs
    (`owned_entries`); return them. Symlinks and plain files are never touched."""
    removed = []
    for path, st, alive in owned_entries(Path(parent or tempfile.gettempdir()), PREFIX + "*"):
        is_dir, is_socket = stat.S_ISDIR(st.st_mode), stat.S_ISSOCK(st.st_mode)
        if alive or not (is_dir or is_socket):
            continue
        if is_dir:
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        logger.info("removed %d directories and sockets left by ended jobs: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def _sweep_quietly(parent: str | None) -> None:
    """`sweep_leftovers`, never in the way of the job that is starting."""
    try:
        sweep_leftovers(parent)
    except Exception as e:  # a cleanup problem must not stop a job
        logger.warning("could not look for directories left by ended jobs: %s", e)


def rank_scratch_prefix(job_id: str, rank: int) -> str:
    """Name prefix of a worker rank's own spill directory (see `remove_rank_scratch`)."""
    return f"{PREFIX}{safe_job_id(job_id)}-rank{rank}-"


def make_rank_scratch(parent: str | None, job_id: str, rank: int) -> str:
    """A fresh 0700 scratch (spill) directory for one Dask rank; `MPILXError` says what to
    change."""
    _sweep_quietly(parent)
    try:
        return tempfile.mkdtemp(prefix=f"{rank_scratch_prefix(job_id, rank)}{owner_tag()}-",
                                dir=parent)
    except OSError as e:
        raise MPILXError(
            f"cannot create the rank's scratch directory under {parent!r}: {e.strerror}; set "
            "mpi-lx.local-directory or mpi-lx.job-directory to a writable local directory"
        ) from e


def remove_rank_scratch(parent: str | None, job_id: str, ranks: list[int]) -> None:
    """Remove the spill directories of ``ranks`` of this job on this host (this user's only)."""
    base = Path(parent or tempfile.gettempdir())
    uid = os.getuid()
    for rank in ranks:
        for path in base.glob(rank_scratch_prefix(job_id, rank) + "*"):
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
                shutil.rmtree(path, ignore_errors=True)


