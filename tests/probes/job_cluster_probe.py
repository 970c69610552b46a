"""MPIJobCluster from a process outside any job (a login-node Lab, say), as a user runs it;
prints one ``JSON {...}`` line with what it saw. Scenarios: ``lifecycle``, ``hold``,
``pending``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

from distributed import Client

from dask_mpi_lx import MPIJobCluster

BATCH = os.environ.get("DMLX_TEST_BATCH", "slurm")  # the stack's batch system
USER = os.environ.get("USER", "")


def squeue(name: str) -> list[str]:
    """Ids of this user's unfinished jobs named ``name``, as the batch system lists them."""
    if BATCH == "pbs":
        argv = ["qselect", "-u", USER, "-N", name]
        return subprocess.run(argv, capture_output=True, text=True).stdout.split()
    out = subprocess.run(["squeue", "-h", "-u", USER, f"--name={name}", "-o", "%i %T"],
                         capture_output=True, text=True)
    return out.stdout.split()[::2]


def job_records(job_id: str) -> tuple[str, str]:
    """(the job's script, the job's record) as the batch system shows them to its owner;
    PBS keeps no script a user can print, so its record stands for both."""
    if BATCH == "pbs":
        shown = subprocess.run(["qstat", "-fx", job_id], capture_output=True, text=True).stdout
        return shown, shown
    script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"],
                            capture_output=True, text=True).stdout
    shown = subprocess.run(["scontrol", "show", "job", "-d", job_id], capture_output=True,
                           text=True).stdout
    return script, shown


def submit_blocker(cores: str) -> str:
    if BATCH == "pbs":
        argv = ["qsub", "-f", "-N", "dmlx-blocker", "-l", f"select=1:ncpus={cores}", "-j", "oe",
                "-o", "/dev/null", "--", "/bin/sleep", "300"]
    else:
        argv = ["sbatch", "--parsable", "-n", cores, "--job-name=dmlx-blocker",
                "--output=/dev/null", "--wrap",
                "sleep 300"]
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def running(job_id: str) -> bool:
    if BATCH == "pbs":
        out = subprocess.run(["qstat", "-fx", "-F", "json", job_id], capture_output=True,
                             text=True).stdout
        return any(j.get("job_state") == "R" for j in json.loads(out or "{}").get("Jobs", {}
                                                                                  ).values())
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                          text=True).stdout.strip() == "RUNNING"


def cancel(job_id: str) -> None:
    subprocess.run(["qdel" if BATCH == "pbs" else "scancel", job_id], capture_output=True)


def until(check, timeout: float = 120.0, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def worker_names(cluster) -> list[str]:
    return sorted(str(w["name"]) for w in cluster.scheduler_info["workers"].values())


def modes(directory: str) -> dict[str, str]:
    found = {".": oct(stat.S_IMODE(os.stat(directory).st_mode))}
    for root, _, files in os.walk(directory):
        for f in files:
            path = os.path.join(root, f)
            found[os.path.relpath(path, directory)] = oct(stat.S_IMODE(os.stat(path).st_mode))
    return found


def lifecycle() -> dict:
    out: dict = {}
    t0 = time.monotonic()
    cluster = MPIJobCluster(cores=4, walltime="00:10:00")
    out["attached_s"] = time.monotonic() - t0
    name = cluster._jobs.job_name
    directory = str(cluster._dir.path)
    out["modes"] = modes(directory)
    first = cluster._jobs.first
    out["script"], out["show_job"] = job_records(first)
    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        out["sum"] = client.submit(sum, [1, 2]).result()
        out["scheduler"] = cluster.scheduler_comm.address  # where the scheduler listens
        out["encrypted"] = out["scheduler"].startswith("tls://")
        out["address"] = cluster.scheduler_address  # what the card shows: mpi-lx://<id>
        cluster.scale(5)  # 2 workers in the first job, one joining job of 3 more
        client.wait_for_workers(5, timeout=120)
        out["workers_5"] = worker_names(cluster)
        # the workers of both jobs are in: the cluster sees both jobs run at its next look
        # (mpi-lx.jobs.poll-interval, 30s)
        out["jobs_5"] = until(lambda: (jobs := cluster.jobs) and all(
            j["state"] == "running" for j in jobs.values()) and jobs, 45) or cluster.jobs
        out["repr_5"] = repr(cluster)
        out["sum_5"] = client.submit(lambda: 40 + 2).result()
        cluster.scale(1)
        until(lambda: len(cluster.scheduler_info["workers"]) == 1, 60)
        out["workers_1"] = worker_names(cluster)
        out["queued_1"] = until(lambda: len(squeue(name)) == 1 and squeue(name), 30)
    cluster.close()
    out["queued_after_close"] = until(lambda: not squeue(name) and ["none"], 60)
    out["dir_after_close"] = os.path.exists(directory)
    return out


def hold() -> dict:
    """A cluster of two jobs whose owner then dies (the test kills this process)."""
    cluster = MPIJobCluster(cores=4, walltime="00:10:00")
    with Client(cluster) as client:
        cluster.scale(5)
        client.wait_for_workers(5, timeout=120)
    print("JSON " + json.dumps({"name": cluster._jobs.job_name, "jobs": cluster.jobs,
                                "address": cluster.scheduler_comm.address,
                                "directory": str(cluster._dir.path)}), flush=True)
    time.sleep(600)
    return {}


def pending() -> dict:
    """A first job that must queue: the card says pending, then running."""
    blocker = submit_blocker(sys.argv[2])
    until(lambda: running(blocker), 60)
    out: dict = {}
    t0 = time.monotonic()
    cluster = MPIJobCluster(cores=4, walltime="00:10:00", wait=False)
    out["returned_s"] = time.monotonic() - t0
    time.sleep(6)  # the cluster looks at its jobs every few seconds
    out["title_pending"] = cluster.title
    out["workers_pending"] = len(cluster.scheduler_info["workers"])
    cancel(blocker)
    until(lambda: len(cluster.scheduler_info["workers"]) == 2, 120)
    time.sleep(6)
    out["title_running"] = cluster.title
    cluster.close()
    return out


if __name__ == "__main__":
    result = {"lifecycle": lifecycle, "hold": hold, "pending": pending}[sys.argv[1]]()
    print("JSON " + json.dumps(result), flush=True)
