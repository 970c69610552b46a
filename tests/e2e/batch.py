"""What the end-to-end tests ask of the batch system, as root, with its own commands: the
jobs of a user, how a job ended, free cores, a job that blocks the queue. One class per
batch system; `current()` is the one the stack runs now (set by the ``stack`` fixture).

These read the batch system directly, not through the product's `dask_mpi_lx.jobs`, so a
test checks the product against the batch system's own record."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PBS_BIN = os.path.join(os.environ.get("DASK_MPI_LX_PBS_EXEC", "/opt/pbs"), "bin")


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    state: str  # Slurm's words for both: PENDING, RUNNING, COMPLETING, ...

    def line(self) -> str:
        return f"{self.job_id} {self.state}"


def _run(argv: list[str], attempts: int = 5) -> str:
    """A query's stdout; a failure (controller busy) is asked again, never read as empty."""
    for _ in range(attempts):
        out = subprocess.run(argv, capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout
        time.sleep(1)
    raise AssertionError(f"{' '.join(argv)} failed {attempts} times: {out.stderr.strip()}")


def as_user(user: str, argv: list[str]) -> list[str]:
    return ["/usr/sbin/runuser", "-u", user, "--", *argv]


class Slurm:
    name = "slurm"
    queue = "debug"

    def jobs(self, user: str) -> list[Job]:
        out = _run(["squeue", "-h", "-u", user, "-o", "%i|%j|%T"])
        return [Job(*line.split("|", 2)) for line in out.splitlines() if line.count("|") == 2]

    def cancel_user(self, user: str) -> None:
        subprocess.run(["scancel", "-u", user], check=False)

    def final_state(self, job_id: str) -> str:
        """How the job ended: CANCELLED, COMPLETED, FAILED, TIMEOUT (or its state now)."""
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                             text=True).stdout
        for word in out.split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return "UNKNOWN"

    def free_cores(self) -> int:
        return int(_run(["sinfo", "-h", "-o", "%C"]).split()[0].split("/")[1])

    def node_cores(self) -> int:
        return int(_run(["sinfo", "-h", "-o", "%c"]).split()[0])

    def blocker_argv(self, cores: int, name: str = "dmlx-blocker") -> list[str]:
        """A job that holds ``cores`` cores of one node until cancelled; prints its id."""
        return ["sbatch", "--parsable", "-n", str(cores), f"--job-name={name}",
                "--output=/dev/null", "--wrap",
                "sleep 300"]

    def cancel_argv(self, job_id: str) -> list[str]:
        return ["scancel", job_id]

    def blocking_argv(self, hosts: list[str], per_node: int, script: str) -> list[str]:
        """Run ``script`` as a job on exactly ``hosts`` (``per_node`` ranks each); returns
        when the job has ended."""
        return ["sbatch", "-W", "-N", str(len(hosts)), "-w", ",".join(hosts),
                "--ntasks-per-node", str(per_node), "-o", "/dev/null", script]

    def hosts(self, job_id: str) -> list[str]:
        nodes = _run(["squeue", "-h", "-j", job_id, "-o", "%N"]).strip()
        return _run(["scontrol", "show", "hostnames", nodes]).split()

    def job_log(self, user: str, job_id: str) -> Path:
        """Where the hub's template writes the job's output (slurm.sh.j2: --output)."""
        return Path(f"~{user}").expanduser() / f"dask-mpi-lx-{job_id}.log"

    def job_env(self, job_id: str) -> str:
        """The job's stored environment, as the batch system keeps it."""
        return subprocess.run(["scontrol", "write", "batch_script", job_id, "-"],
                              capture_output=True, text=True).stdout


class PBS:
    name = "pbs"
    queue = "workq"
    STATES = {"Q": "PENDING", "H": "PENDING", "W": "PENDING", "T": "PENDING", "R": "RUNNING",
              "E": "COMPLETING", "X": "EXITING", "F": "FINISHED"}

    def _q(self, tool: str) -> str:
        return os.path.join(PBS_BIN, tool)

    def _records(self, *ids: str) -> dict[str, dict]:
        records = {}
        for job_id in ids:
            out = subprocess.run([self._q("qstat"), "-fx", "-F", "json", job_id],
                                 capture_output=True, text=True).stdout
            records.update(json.loads(out or "{}").get("Jobs", {}))
        return records

    def jobs(self, user: str) -> list[Job]:
        ids = _run([self._q("qselect"), "-u", user]).split()
        return [Job(i, r.get("Job_Name", ""), self.STATES.get(r.get("job_state", ""), "?"))
                for i, r in self._records(*ids).items() if r.get("job_state") != "F"]

    def cancel_user(self, user: str) -> None:
        ids = subprocess.run([self._q("qselect"), "-u", user], capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run([self._q("qdel"), "-W", "force", *ids], capture_output=True)
            deadline = time.monotonic() + 30
            while self.jobs(user) and time.monotonic() < deadline:
                time.sleep(0.5)

    def final_state(self, job_id: str) -> str:
        """CANCELLED for a job deleted with qdel (PBS records it in its history as
        substate 91, or as Exit_status 271 = killed by SIGTERM after it ran), COMPLETED for
        one that ended by itself, else its state now."""
        record = next(iter(self._records(job_id).values()), {})
        state = record.get("job_state", "")
        if state != "F":
            return self.STATES.get(state, "UNKNOWN")
        if str(record.get("substate")) == "91" or record.get("Exit_status") in (-1, 271):
            return "CANCELLED"
        return "COMPLETED" if record.get("Exit_status") == 0 else "FAILED"

    def _nodes(self) -> dict[str, dict]:
        return json.loads(_run([self._q("pbsnodes"), "-a", "-F", "json"])).get("nodes", {})

    def free_cores(self) -> int:
        node = next(iter(self._nodes().values()))
        return (int(node["resources_available"]["ncpus"])
                - int(node.get("resources_assigned", {}).get("ncpus", 0)))

    def node_cores(self) -> int:
        return int(next(iter(self._nodes().values()))["resources_available"]["ncpus"])

    def blocker_argv(self, cores: int, name: str = "dmlx-blocker") -> list[str]:
        return [self._q("qsub"), "-f", "-N", name, "-l", f"select=1:ncpus={cores}", "-j", "oe",
                "-o", "/dev/null", "--", "/bin/sleep", "300"]

    def cancel_argv(self, job_id: str) -> list[str]:
        return [self._q("qdel"), job_id]

    def blocking_argv(self, hosts: list[str], per_node: int, script: str) -> list[str]:
        select = "+".join(f"1:ncpus={per_node}:mpiprocs={per_node}:host={h}" for h in hosts)
        return [self._q("qsub"), "-f", "-W", "block=true", "-l", f"select={select}",
                "-l", "place=scatter", "-j", "oe", "-o", "/dev/null", script]

    def hosts(self, job_id: str) -> list[str]:
        record = next(iter(self._records(job_id).values()))
        return list(dict.fromkeys(p.split("/")[0] for p in record["exec_host"].split("+")))

    def job_log(self, user: str, job_id: str) -> Path:
        """pbs.sh.j2's "-o <home>/" and -k eod: PBS names the file "<full job id>.OU"."""
        home = Path(f"~{user}").expanduser()
        return next(iter(sorted(home.glob(f"{job_id}.*.OU"))), home / f"{job_id}.OU")

    def job_env(self, job_id: str) -> str:
        record = next(iter(self._records(job_id).values()), {})
        return json.dumps(record.get("Variable_List", {}))


SYSTEMS = {"slurm": Slurm(), "pbs": PBS()}
_current: list[Slurm | PBS] = [SYSTEMS["slurm"]]


def use(name: str) -> Slurm | PBS:
    _current[0] = SYSTEMS[name]
    return _current[0]


def current() -> Slurm | PBS:
    return _current[0]
