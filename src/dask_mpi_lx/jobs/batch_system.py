"""Submit, list and cancel jobs with the batch system's own commands (Slurm or PBS Pro).

Jobs are found again by name (``squeue --name``, ``qselect -N``), so the batch system is the
one record of a cluster's jobs: every cluster object of the same name sees the same jobs."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    """sbatch, squeue, scancel."""

    name = "slurm"

    def submit_argv(self, job_name: str, account: str | None = None,
                    after: str | None = None) -> list[str]:
        """``after``: start only once that job has started (a joining job needs its
        scheduler, which the first job runs)."""
        return ["sbatch", "--parsable", f"--job-name={job_name}",
                *([f"--account={account}"] if account else []),
                *([f"--dependency=after:{after}"] if after else [])]

    def parse_submitted(self, out: str) -> str:
        return out.strip().split(";")[0]

    def cancel_argv(self, ids: list[str]) -> list[str]:
        return ["scancel", *ids]

    async def cancel(self, ids: list[str]) -> None:
        if ids:
            await run(self.cancel_argv(ids))

    async def cancel_by_name(self, job_name: str) -> None:
        """Every job of this user named ``job_name`` (also one whose submit was cut short)."""
        await run(["scancel", "-u", getpass.getuser(), f"--name={job_name}"])

    def list_argv(self, job_name: str) -> list[str]:
        return ["squeue", "-h", "-u", getpass.getuser(), f"--name={job_name}", "-o", "%i|%T|%N"]

    async def list(self, job_name: str) -> list[JobState]:
        """This user's jobs named ``job_name`` that the batch system still lists, with their
        hosts one by one ("n1", "n2"), as PBS gives them."""
        jobs = self.parse_list(await run(self.list_argv(job_name)), job_name)
        return [JobState(j.job_id, j.state, await self.expand(j.hosts)) for j in jobs]

    async def expand(self, hosts: tuple[str, ...]) -> tuple[str, ...]:
        """Slurm's compressed host list ("n[1-2]") as names; ``scontrol show hostnames``
        reads it locally (no call to slurmctld), and knows every form Slurm prints."""
        if not any("[" in h for h in hosts):
            return hosts
        return tuple((await run(["scontrol", "show", "hostnames", ",".join(hosts)])).split())

    async def has_jobs(self, job_name: str) -> bool:
        """Whether this user has an unfinished job named ``job_name``."""
        return bool(await self.list(job_name))

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

    async def time_left(self, job_id: str) -> int | None:
        """Seconds the job may still run (None: unlimited or unknown)."""
        return parse_time_left(await run(["squeue", "-h", "-j", job_id, "-o", "%L"]))


class PBS:
    """qsub, qselect + qstat, qdel (PBS Pro and OpenPBS).

    ``qstat -f -F json`` takes no ``-u`` (OpenPBS 23.06: "conflicting options") and prints
    only the first of several ids, so jobs are selected with ``qselect -u -N`` and read one
    ``qstat -fx -F json <id>`` each."""

    name = "pbs"

    def submit_argv(self, job_name: str, account: str | None = None,
                    after: str | None = None) -> list[str]:
        # -f: in the foreground; without it OpenPBS's qsub leaves a daemon of the user's
        # behind to serve later submissions
        return ["qsub", "-f", "-N", job_name, *(["-A", account] if account else []),
                *(["-W", f"depend=after:{after}"] if after else [])]

    def parse_submitted(self, out: str) -> str:
        return out.strip()

    def cancel_argv(self, ids: list[str]) -> list[str]:
        return ["qdel", *ids]

    async def cancel(self, ids: list[str]) -> None:
        """qdel each job; one that finished meanwhile is not an error."""
        problems = []
        for job_id in ids:
            try:
                await run(self.cancel_argv([job_id]))
            except BatchError as e:
                if "finished" not in str(e) and "Unknown Job Id" not in str(e):
                    problems.append(str(e))
        if problems:
            raise BatchError("; ".join(problems))

    async def select(self, job_name: str) -> list[str]:
        """Ids of this user's unfinished jobs named ``job_name``."""
        out = await run(["qselect", "-u", getpass.getuser(), "-N", job_name])
        return [line.strip() for line in out.splitlines() if line.strip()]

    async def cancel_by_name(self, job_name: str) -> None:
        await self.cancel(await self.select(job_name))

    async def has_jobs(self, job_name: str) -> bool:
        return bool(await self.select(job_name))

    async def job_info(self, job_id: str) -> dict[str, Any] | None:
        """One job's ``qstat -fx -F json`` record (finished jobs too, with job history on);
        None if the server no longer knows it."""
        try:
            out = await run(["qstat", "-fx", "-F", "json", job_id])
        except BatchError as e:
            if "Unknown Job Id" in str(e) or "has finished" in str(e):
                return None
            raise
        try:
            jobs = json.loads(out or "{}").get("Jobs", {})
        except (ValueError, AttributeError):
            jobs = None
        if not isinstance(jobs, dict):
            raise BatchError(f"qstat printed no job record for {job_id}: {out[:200]!r}")
        return next(iter(jobs.values()), None)

    async def list(self, job_name: str) -> list[JobState]:
        jobs = []
        for job_id in await self.select(job_name):
            info = await self.job_info(job_id)
            if info is not None:
                jobs.append(self.job_state(job_id, info))
        return jobs

    def job_state(self, job_id: str, info: Mapping[str, Any]) -> JobState:
        state = info.get("job_state", "")
        phase = "pending" if state in ("Q", "H", "W", "T", "S") else \
            "running" if state == "R" else "ending"
        return JobState(job_id, phase, exec_hosts(str(info.get("exec_host", ""))))

    async def time_left(self, job_id: str) -> int | None:
        """Walltime asked minus walltime used."""
        info = await self.job_info(job_id)
        if info is None:
            return None
        limit = parse_time_left(str(info.get("Resource_List", {}).get("walltime", "")))
        used = parse_time_left(str(info.get("resources_used", {}).get("walltime", "0")))
        return None if limit is None else max(0, limit - (used or 0))


def exec_hosts(exec_host: str) -> tuple[str, ...]:
    """PBS's ``exec_host`` ("n1/0*2+n2/0*2") as host names, in order, once each."""
    hosts = [part.split("/")[0] for part in exec_host.split("+") if part]
    return tuple(dict.fromkeys(hosts))


def batch_system(name: str) -> Slurm | PBS:
    return PBS() if name == "pbs" else Slurm()


def current_batch_system(env: Mapping[str, str] | None = None) -> Slurm | PBS | None:
    """The batch system of the job this process runs in (None: not in a job)."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        return Slurm()
    if env.get("PBS_JOBID"):
        return PBS()
    return None


def parse_time_left(text: str) -> int | None:
    """Slurm's ``%L`` or PBS's walltime ("1-02:03:04", "59:30", "100:00:00") in seconds;
    None if unlimited or unreadable."""
    text = text.strip()
    days, _, rest = text.rpartition("-")
    parts = rest.split(":")
    if not all(p.isascii() and p.isdigit() for p in [*parts, *([days] if days else [])]):
        return None
    seconds = 0
    for part in parts:
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
