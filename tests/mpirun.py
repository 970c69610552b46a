"""A small `mpirical`: run code under a real MPI launcher and gather each rank's outcome.

* `run(argv, np)` runs ``mpirun -np N argv...`` with a timeout and returns its output;
  on a timeout it kills the whole process group and fails with everything it printed.
* `run_ranks(func, np)` runs an importable function on every rank and returns each rank's
  return value, failing with every rank's traceback when any rank raised or went missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import missing_real_part

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def require(tool: str) -> str:
    """Path of ``tool``; a failure under CI=true (CI must install it), else a skip."""
    path = shutil.which(tool) or (str(VENV_BIN / tool) if (VENV_BIN / tool).exists() else None)
    if path:
        return path
    missing_real_part(f"{tool} not found: install the real part (see README, `make test` does it)")


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.1f}s\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")


def launcher_argv(np: int, launcher: str = "openmpi", env: dict | None = None,
                  mpi_args: tuple[str, ...] = ()) -> list[str]:
    if launcher == "mpich":
        mpiexec = (env or os.environ).get("MPICH_MPIEXEC") or require("mpiexec.mpich")
        return [mpiexec, *mpi_args, "-n", str(np)]
    argv = [require("mpirun"), *mpi_args, "-np", str(np), "--oversubscribe"]
    if os.geteuid() == 0:
        argv.insert(1, "--allow-run-as-root")
    return argv


def rank_process(rank: int, candidates: Iterable[int]) -> int | None:
    """Of the ``candidates``, the pid whose environment says it is Open MPI rank ``rank``."""
    for pid in candidates:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            return int(pid)
    return None


def notebook(launch_cmd: list[str], code: str, *options: str) -> list[str]:
    """``dask-mpi-lx launch [options] -- python -c code``: Python code as rank 0's command,
    standing in for the Jupyter server."""
    return [*launch_cmd, "launch", *options, "--", sys.executable, "-c", code]


def start(argv: list[str], np: int, env: dict | None = None, launcher: str = "openmpi",
          mpi_args: tuple[str, ...] = (), **popen: object) -> subprocess.Popen:
    """Start ``argv`` on ``np`` ranks in its own process group (for `stop_group`);
    ``mpi_args`` go to the MPI launcher (e.g. ``--enable-recovery``)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(launcher_argv(np, launcher, full_env, mpi_args) + argv, env=full_env,
                            text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **popen)


def stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(argv: list[str], np: int, timeout: float = 120, env: dict | None = None,
        launcher: str = "openmpi", check: bool = False, mpi_args: tuple[str, ...] = ()) -> Run:
    """Run ``argv`` under the MPI launcher; fail with all output on timeout (or error)."""
    t0 = time.monotonic()
    proc = start(argv, np, env, launcher, mpi_args)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, err = proc.communicate()
        result = Run(proc.args, -9, out, err, time.monotonic() - t0)
        pytest.fail(f"timed out after {timeout}s\n{result.describe()}")
    result = Run(list(proc.args), proc.returncode, out, err, time.monotonic() - t0)
    if check and result.returncode != 0:
        pytest.fail(result.describe())
    return result


def run_ranks(func: object, np: int, *args: object, timeout: float = 120,
              env: dict | None = None, launcher: str = "openmpi") -> list[object]:
    """Run ``func(*args)`` (a module-level function) on every rank; return each rank's value."""
    target = f"{func.__module__}:{func.__qualname__}"
    with tempfile.TemporaryDirectory() as outdir:
        argv = [sys.executable, "-m", "tests.rank_runner", target, outdir, json.dumps(args)]
        result = run(argv, np, timeout, {"PYTHONPATH": str(ROOT), **(env or {})}, launcher)
        outcomes = {}
        for r in range(np):
            path = Path(outdir) / f"rank-{r}.json"
            outcomes[r] = json.loads(path.read_text()) if path.exists() else None
    failed = {r: o for r, o in outcomes.items() if o is None or not o["ok"]}
    if failed:
        lines = [f"rank {r}: " + ("no result (died or never ran)" if o is None
                                  else o["traceback"]) for r, o in failed.items()]
        pytest.fail("\n".join(lines) + "\n" + result.describe())
    return [outcomes[r]["value"] for r in range(np)]
