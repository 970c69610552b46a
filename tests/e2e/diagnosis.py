"""What a failed spawn leaves to read: the newest job log in the user's home, the hub's log
and the batch system's view, kept for the session's last lines (CI shows a run's tail)."""

from __future__ import annotations

import subprocess
from pathlib import Path

HUB_LOG = Path("/srv/dask-mpi-lx/hub/hub.log")
LOG_PATTERNS = ("*.OU", "dask-mpi-lx-*.log")  # the PBS and Slurm templates' -o
RECORDED: list[str] = []


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({path}: {e.strerror})"


def newest_job_log(user: str) -> Path | None:
    home = Path(f"~{user}").expanduser()
    if not home.is_dir():
        return None
    logs = [p for pattern in LOG_PATTERNS for p in home.glob(pattern) if p.is_file()]
    return max(logs, key=lambda p: p.stat().st_mtime, default=None)


def batch_view():
    """The batch system's nodes and queue, whichever of PBS or Slurm is running."""
    for argv in (["/opt/pbs/bin/pbsnodes", "-av"], ["/opt/pbs/bin/qstat", "-answ1"],
                 ["sinfo", "-N", "-l"], ["squeue", "-a"]):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0:
            yield f"$ {' '.join(argv)}\n" + "\n".join(out.stdout.splitlines()[:30])


def record(what: str, user: str) -> str:
    """Keep (and return) what there is to read about ``what`` failing for ``user``."""
    log = newest_job_log(user)
    parts = [f"== {what}",
             f"-- newest job log of {user}: {log}\n{tail(log) if log else '(none)'}",
             f"-- {HUB_LOG} (tail)\n{tail(HUB_LOG, 15)}", *batch_view()]
    text = "\n".join(parts)
    RECORDED.append(text)
    return text


def summary(limit: int = 2, chars: int = 6000) -> str:
    """The first ``limit`` records, cut to ``chars``: the first failure usually explains."""
    text = "\n\n".join(RECORDED[:limit])
    return text[:chars] + ("\n..." if len(text) > chars else "")
