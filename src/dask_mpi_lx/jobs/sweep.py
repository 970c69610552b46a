"""Remove the directories (private keys inside) of clusters whose batch jobs have all ended.

A cluster object that was killed, or a home that filled up mid-close, leaves its directory
behind; the batch system is the record of which clusters still live, so a directory whose
job name it no longer lists, and that is old enough not to be one being made right now,
is removed by the next cluster its owner starts."""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
from pathlib import Path

from ..exceptions import MPILXError
from .batch_system import PBS, Slurm

logger = logging.getLogger(__name__)

# a directory younger than this may belong to a cluster whose first submit is in flight
GRACE = 300.0
CLUSTER_ID = re.compile(r"[0-9a-f]{8}")
BURST = re.compile(r"burst-[A-Za-z0-9_.-]+")


def job_name_of(directory: str) -> str | None:
    """The batch job name of the cluster whose directory is called ``directory`` (None: not
    a cluster directory of ours)."""
    if CLUSTER_ID.fullmatch(directory) or BURST.fullmatch(directory):
        return f"dmlx-{directory}"
    return None


def candidates(parent: Path, grace: float = GRACE, now: float | None = None,
               keep: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """This user's cluster directories under ``parent`` older than ``grace`` seconds, with
    their job names; never a symbolic link or another user's entry."""
    now = time.time() if now is None else now
    found = []
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for entry in entries:
        name = job_name_of(entry.name)
        if name is None or entry.name in keep:
            continue
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and now - st.st_mtime > grace:
            found.append((Path(entry.path), name))
    return found


async def sweep_dead_clusters(parent: str | os.PathLike, system: Slurm | PBS, *,
                              grace: float = GRACE, keep: tuple[str, ...] = ()) -> list[Path]:
    """Remove the directories under ``parent`` whose jobs the batch system no longer lists;
    return them. Stops at the first batch-system error (then nothing is known)."""
    removed = []
    base = Path(os.path.expanduser(str(parent)))
    for path, job_name in candidates(base, grace, keep=keep):
        if await system.has_jobs(job_name):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        logger.info("removed the directories of %d ended cluster(s) under %s: %s",
                    len(removed), base, ", ".join(p.name for p in removed))
    return removed


async def sweep_quietly(parent: str | os.PathLike, system: Slurm | PBS,
                        keep: tuple[str, ...] = ()) -> None:
    """`sweep_dead_clusters`, never in the way of the cluster that is starting."""
    try:
        await sweep_dead_clusters(parent, system, keep=keep)
    except (MPILXError, OSError) as e:
        logger.warning("could not look for directories of ended clusters: %s", e)
