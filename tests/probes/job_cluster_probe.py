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


def squeue(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-u", os.environ.get("USER", ""), f"--name={name}",
                          "-o", "%i %T"], capture_output=True, text=True)
    return out.stdout.split()[::2]


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
    out["script"] = subprocess.run(["scontrol", "write", "batch_script", first, "-"],
                                   capture_output=True, text=True).stdout
    out["show_job"] = subprocess.run(["scontrol", "show", "job", "-d", first],
                                     capture_output=True, text=True).stdout
    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        out["sum"] = client.submit(sum, [1, 2]).result()
        out["encrypted"] = cluster.scheduler_address.startswith("tls://")
        cluster.scale(5)  # 2 workers in the first job, one joining job of 3 more
        client.wait_for_workers(5, timeout=120)
        out["workers_5"] = worker_names(cluster)
        out["jobs_5"] = cluster.jobs
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
                                "address": cluster.scheduler_address,
                                "directory": str(cluster._dir.path)}), flush=True)
    time.sleep(600)
    return {}


def pending() -> dict:
    """A first job that must queue: the card says pending, then running."""
    blocker = subprocess.run(["sbatch", "--parsable", "-n", sys.argv[2], "--job-name=dmlx-blocker",
                              "--wrap", "sleep 300"], capture_output=True, text=True).stdout.strip()
    until(lambda: subprocess.run(["squeue", "-h", "-j", blocker, "-o", "%T"], capture_output=True,
                                 text=True).stdout.strip() == "RUNNING", 60)
    out: dict = {}
    t0 = time.monotonic()
    cluster = MPIJobCluster(cores=4, walltime="00:10:00", wait=False)
    out["returned_s"] = time.monotonic() - t0
    time.sleep(6)  # the cluster looks at its jobs every few seconds
    out["title_pending"] = cluster.title
    out["workers_pending"] = len(cluster.scheduler_info["workers"])
    subprocess.run(["scancel", blocker])
    until(lambda: len(cluster.scheduler_info["workers"]) == 2, 120)
    time.sleep(6)
    out["title_running"] = cluster.title
    cluster.close()
    return out


if __name__ == "__main__":
    result = {"lifecycle": lifecycle, "hold": hold, "pending": pending}[sys.argv[1]]()
    print("JSON " + json.dumps(result), flush=True)
