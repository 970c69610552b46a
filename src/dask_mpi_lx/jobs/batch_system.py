"""Submit, list and cancel jobs with the batch system's own commands (Slurm or PBS Pro).

Jobs are found again by name (``squeue --name``, ``qstat -f``), so the batch system is the
one record of a cluster's jobs: every cluster object of the same name sees the same jobs."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..exceptions import MPILXError

COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str                # pending | running | ending
    hosts: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.state in ("pending", "running")


class BatchError(MPILXError):
    """A batch command failed; the message carries what it printed."""


async def run(argv: list[str], stdin: str | None = None, env: Mapping[str, str] | None = None,
              timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a batch command; its stdout, or `BatchError` with its own words."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(env) if env is not None else None)
    except OSError as e:
        raise BatchError(f"cannot run {argv[0]}: {e.strerror or e} (is the batch system's "
                         "client installed here?)") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None),
                                          timeout)
    except asyncio.TimeoutError:
        proc.kill()
        raise BatchError(f"{argv[0]} did not answer within {timeout:g}s") from None
    if proc.returncode:
        words = (err or out).decode(errors="replace").strip().splitlines()
        raise BatchError(f"{argv[0]} failed: {words[-1] if words else f'exit {proc.returncode}'}")
    return out.decode(errors="replace")


class Slurm:
    name = "slurm"

    def submit_argv(self, job_name: str, account: str | None = None) -> list[str]:
        return ["sbatch", "--parsable", f"--job-name={job_name}",
                *([f"--account={account}"] if account else [])]

    def parse_submitted(self, out: str) -> str:
        return out.strip().split(";")[0]

    def cancel_argv(self, ids: list[str]) -> list[str]:
        return ["scancel", *ids]

    def list_argv(self, job_name: str) -> list[str]:
        return ["squeue", "-h", "-u", getpass.getuser(), f"--name={job_name}", "-o", "%i|%T|%N"]

    def parse_list(self, out: str, job_name: str = "") -> list[JobState]:
        jobs = []
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) != 3:
                continue
            job_id, state, nodes = parts
            phase = {"PENDING": "pending", "CONFIGURING": "pending", "REQUEUED": "pending",
                     "RUNNING": "running"}.get(state, "ending")
            jobs.append(JobState(job_id, phase, (nodes,) if nodes else ()))
        return jobs

    def time_left_argv(self, job_id: str) -> list[str]:
        return ["squeue", "-h", "-j", job_id, "-o", "%L"]


class PBS:
    name = "pbs"

    def submit_argv(self, job_name: str, account: str | None = None) -> list[str]:
        return ["qsub", "-N", job_name, *(["-A", account] if account else [])]

    def parse_submitted(self, out: str) -> str:
        return out.strip()

    def cancel_argv(self, ids: list[str]) -> list[str]:
        return ["qdel", *ids]

    def list_argv(self, job_name: str) -> list[str]:
        return ["qstat", "-f", "-F", "json", "-u", getpass.getuser()]

    def parse_list(self, out: str, job_name: str = "") -> list[JobState]:
        data = json.loads(out or "{}").get("Jobs", {})
        jobs = []
        for job_id, info in data.items():
            if job_name and info.get("Job_Name") != job_name:
                continue
            state = info.get("job_state", "")
            phase = "pending" if state in ("Q", "H", "W", "T") else \
                "running" if state == "R" else "ending"
            hosts = tuple(sorted({part.split("/")[0]
                                  for part in str(info.get("exec_host", "")).split("+") if part}))
            jobs.append(JobState(job_id, phase, hosts))
        return jobs

    def time_left_argv(self, job_id: str) -> list[str]:
        return ["qstat", "-f", "-F", "json", job_id]


def batch_system(name: str) -> Slurm | PBS:
    return PBS() if name == "pbs" else Slurm()


def parse_time_left(text: str) -> int | None:
    """Slurm's ``%L`` ("1-02:03:04", "59:30", "UNLIMITED") in seconds; None if unlimited."""
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    days, _, rest = text.rpartition("-")
    seconds = 0
    for part in rest.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds + int(days or 0) * 86400


def submit_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the submit command (and with Slurm's --export=ALL, the job) sees: the caller's
    environment without hub credentials, MPI variables, the batch system's variables of the
    job it runs in, and the notebook job's Dask cluster (the new job is another cluster)."""
    from ..mpi.environ import HUB_SECRET_PREFIXES, MPI_PREFIXES

    drop = HUB_SECRET_PREFIXES + MPI_PREFIXES + (
        "SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "PBS_", "DASK_SCHEDULER_ADDRESS", "DASK_CONFIG",
        "DASK_MPI_LX__BURST__")
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if not k.startswith(drop)}
