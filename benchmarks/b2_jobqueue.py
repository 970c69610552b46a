"""B2: against today's Dask tab path, dask-jobqueue's SLURMCluster (one job per worker), on
the same local Slurm (etc/local/stack.py up; its partition advertises more CPUs than the machine has).

(a) busy site: the user's own job holds every CPU of the partition (as when a user asks the
    spawner for all the cores). Ours runs its workers inside that job; jobqueue's worker
    jobs pend. Reported: time to N workers for both (jobqueue observed for --wait seconds),
    and the share of the allocation's cores that run Dask workers.
(b) idle partition: time from request to N workers, ours (a job running the launcher) vs
    jobqueue (N single-core jobs), alternating, medians. Both are timed by a client in this
    process that sees N workers, and both include starting their scheduler (ours in the job,
    jobqueue's SLURMCluster in this process).

Run: python benchmarks/b2_jobqueue.py [--workers 2 4 6] [--runs 3] [--wait 120]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit, flat, job_dask_config, median, submit_launch_job

CHILD = """
import sys, time
from distributed import Client
with Client() as c:
    c.wait_for_workers(int(sys.argv[2]), timeout=300)
    open(sys.argv[1], "w").write(repr(time.time()))
    time.sleep(float(sys.argv[3]))
"""
# (b): rank 0's command only keeps the job until the benchmark is done
HOLD = """
import os, sys, time
end = time.time() + 300
while not os.path.exists(sys.argv[1]) and time.time() < end:
    time.sleep(0.1)
"""


def partition_cpus() -> int:
    """CPUs the partition's nodes offer together (sinfo: allocated/idle/other/total)."""
    out = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True,
                         check=True).stdout.split()
    return sum(int(line.split("/")[3]) for line in out)


def ours_job(n: int, hold: float = 0.0) -> tuple[str, Path]:
    """A job of n+2 ranks running the launcher; the child marks when n workers are in."""
    job, tmp = submit_launch_job(n + 2, CHILD, ["{dir}/ready", str(n), str(hold)], "b2-")
    return job, tmp / "ready"


def _queued(job: str) -> bool:
    return bool(subprocess.run(["squeue", "-h", "-j", job], capture_output=True,
                               text=True).stdout.strip())


def ours(n: int) -> float:
    """From sbatch until a client here sees n workers, timed like jobqueue's: the client
    connects with the job's dask config (the notebook's: address, TLS keys) as soon as rank
    0 has written it (at once: --no-wait-for-workers)."""
    import dask
    from distributed import Client

    t0 = time.time()
    job, tmp = submit_launch_job(n + 2, HOLD, ["{dir}/done"], "b2-",
                                 ["--no-wait-for-workers", "--job-directory", "{dir}"])
    try:
        cfg = job_dask_config(tmp, lambda: _queued(job), 300)
        with dask.config.set(flat({"distributed": cfg.get("distributed", {})})), \
                Client(cfg["scheduler-address"], timeout="300s") as client:
            client.wait_for_workers(n, timeout=300)
            ready = time.time() - t0
    finally:
        (tmp / "done").touch()
        subprocess.run(["scancel", job])
        wait_empty()
    return ready


def jobqueue_cluster():
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(cores=1, processes=1, memory="1GiB", walltime="00:10:00",
                        python=sys.executable, scheduler_options={"dashboard_address": None},
                        log_directory=tempfile.mkdtemp(prefix="b2jq-"))


def jobqueue(n: int) -> float:
    from distributed import Client

    t0 = time.time()  # ours starts its scheduler in the job: jobqueue's start counts too
    with jobqueue_cluster() as cluster, Client(cluster) as client:
        cluster.scale(n)
        client.wait_for_workers(n, timeout=300)
        ready = time.time() - t0
    wait_empty()
    return ready


def wait_empty(timeout: float = 60) -> None:
    t0 = time.time()
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        if time.time() - t0 > timeout:
            subprocess.run("scancel $(squeue -h -o %i)", shell=True)
        time.sleep(0.2)


def busy_site(wait: float) -> dict:
    from distributed import Client

    total = partition_cpus()
    n = total - 2
    t0 = time.time()
    job, stamp = ours_job(n, hold=wait + 60)
    while not stamp.exists():
        time.sleep(0.05)
    ours_ready = float(stamp.read_text()) - t0
    with jobqueue_cluster() as cluster, Client(cluster) as client:
        t1 = time.time()
        cluster.scale(n)
        time.sleep(wait)
        connected = len(client.scheduler_info()["workers"])
        states = subprocess.run(["squeue", "-h", "-o", "%T"], capture_output=True,
                                text=True).stdout.split()
    subprocess.run(["scancel", job])
    wait_empty()
    return {"allocation_cores": total, "workers_wanted": n,
            "ours_ready_s": round(ours_ready, 3), "ours_dask_core_share": round(n / total, 3),
            "jobqueue_workers_after_s": round(time.time() - t1, 1),
            "jobqueue_workers_connected": connected,
            "jobqueue_jobs_pending": states.count("PENDING"),
            "jobqueue_dask_core_share": round(connected / total, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4, 6])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--wait", type=float, default=120)
    args = ap.parse_args()
    wait_empty()
    idle = []
    for n in args.workers:
        a, b = [], []
        for _ in range(args.runs):
            a.append(ours(n))
            b.append(jobqueue(n))
        idle.append({"workers": n, "ours_s": median(a), "jobqueue_s": median(b),
                     "ratio": round(median(a) / median(b), 3),
                     "ours_runs_s": [round(x, 2) for x in a],
                     "jobqueue_runs_s": [round(x, 2) for x in b]})
        print(idle[-1], file=sys.stderr, flush=True)
    busy = busy_site(args.wait)
    emit({"benchmark": "B2 vs dask-jobqueue SLURMCluster", "timed_by": "client",
          "idle_partition": idle,
          "busy_site": busy, "targets": {"busy": "ours ready, jobqueue still pending",
                                         "idle": "ours <= 1.5x jobqueue"}}, "b2_jobqueue")


if __name__ == "__main__":
    main()
