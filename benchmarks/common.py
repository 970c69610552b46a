"""Shared by the benchmarks: MPI command lines, process bookkeeping, medians, JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
ERROR_LINE = re.compile(r"Traceback|\bERROR\b|Error:|Exception", re.IGNORECASE)


def mpirun(np: int) -> list[str]:
    argv = ["mpirun", "-np", str(np), "--oversubscribe"]
    if os.geteuid() == 0:
        argv.insert(1, "--allow-run-as-root")
    return argv


def _first_line(*argv: str) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def versions() -> dict:
    """What the results were measured with, read from the machine (not written by hand)."""
    import distributed

    found = {"distributed": distributed.__version__}
    mpi = _first_line("mpirun", "--version")
    if mpi:
        found["MPI"] = mpi.replace("mpirun (Open MPI) ", "Open MPI ")
    slurm = _first_line("sinfo", "--version")
    if slurm:
        found["Slurm"] = slurm.replace("slurm-wlm ", "").replace("slurm ", "")
    debian = Path("/etc/debian_version")
    if debian.exists():
        found["Debian"] = debian.read_text().strip()
    return found


def machine() -> dict:
    return {"host": platform.node(), "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "versions": versions()}


def median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def error_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if ERROR_LINE.search(line))


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def flat(d: dict, prefix: str = "") -> dict:
    """Nested config as dotted keys (what dask.config.set takes)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def job_dask_config(jobs: Path, running, timeout: float = 600.0) -> dict:
    """The dask config a job's notebook gets (scheduler address, TLS keys), read from under
    ``jobs`` (its --job-directory) once rank 0 has written all of it; polls every 50 ms.
    ``running()`` says whether the job still runs: if it ends first, this fails."""
    import yaml

    from dask_mpi_lx.launcher.jobdir import CONFIG_FILE

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for path in jobs.glob(f"*/dask/{CONFIG_FILE}"):
            try:
                cfg = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):
                continue
            job = cfg.get("mpi-lx", {}).get("job", {}) if isinstance(cfg, dict) else {}
            if job.get("scheduler-address"):  # among the last keys written
                return cfg
        if not running():
            raise RuntimeError("the job ended before its dask config appeared")
        time.sleep(0.05)
    raise RuntimeError(f"no dask config for the job after {timeout:g}s")


def emit(result: dict, name: str, save: bool = True) -> None:
    """Print the one JSON line and (``save``) keep a copy in benchmarks/results/<name>.json."""
    result = {**result, "machine": machine()}
    line = json.dumps(result)
    if save:
        out = ROOT / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(line + "\n")
    print(line, flush=True)


def submit_launch_job(ranks: int, child_code: str, child_args: list[str], prefix: str,
                      launch_args: list[str] = ()) -> tuple[str, Path]:
    """sbatch a job running `mpirun dask-mpi-lx launch ... -- python -c CHILD ARGS` in a fresh
    world-readable folder (its log is job.log there; "{dir}" in child_args and launch_args is
    that folder). Like the spawner's template, the batch shell traps SIGTERM, so mpirun is
    never orphaned by scancel. Returns (job id, folder)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    tmp.chmod(0o755)
    child_args = [a.format(dir=tmp) for a in child_args]
    launch_args = [a.format(dir=tmp) for a in launch_args]
    script = (f"#!/bin/bash\n#SBATCH --ntasks={ranks}\n#SBATCH --output={tmp}/job.log\n"
              "trap 'echo SIGTERM received' TERM\n"
              f"mpirun --allow-run-as-root {BIN}/dask-mpi-lx launch {' '.join(launch_args)} -- "
              f"{sys.executable} -c '{child_code}' {' '.join(child_args)}\n")
    job = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True,
                         check=True).stdout.strip()
    return job, tmp
