"""B9: clusters that run as batch jobs of their own, on the same Slurm. Ours:
`MPIJobCluster` (MPI jobs running `dask-mpi-lx serve`: the first job's rank 0 keeps the job,
rank 1 runs the scheduler, every other rank a worker; each joining job runs cores-1 workers).
dask-jobqueue's `SLURMCluster`: the scheduler runs in this process, one job per worker.

For each N: from the cluster's constructor call until a Client sees N workers (ours: the
constructor waits for the first job and its scheduler, then `scale(N)`; jobqueue:
`scale(N)`), the batch jobs it submitted (its queue entries then), and the close time: from
`client.close(); cluster.close()` until squeue lists none of its jobs. Each run is its own
process with a time limit (`--limit`): a run that does not get there is recorded as a failure
(what it waited for, its jobs' states, other users' jobs on the node), never a hang; its jobs
are cancelled either way.

Job shapes. Slurm does not start a job asking more CPUs than the node has (here `vm`, 16 CPUs
configured; the machine has fewer real cores), and every job of one MPIJobCluster has the same
`cores`. Ours uses the fewest jobs of at most node-CPUs ranks, then the fewest ranks for that
many jobs: N workers in k jobs of C ranks need (C-2) + (k-1)(C-1) >= N. N=4: 1 job of 6
ranks; N=16: 2 jobs of 10 (8 + 9 = 17 workers: a joining job runs all its ranks); N=64: 5 jobs
of 14 (12 + 4 x 13 = 64), 70 ranks. jobqueue: N jobs of 1 core (processes=1, cores=1).
Both ask for 256MiB per worker and a 20 minute walltime on partition `debug`, and (default
`--oversubscribe always`) submit with `--oversubscribe` (the partition has OverSubscribe=YES:4:
a core takes at most 4 such jobs, and none while another user's job without it holds it).
64 workers oversubscribe this machine heavily: expected, and said in the output.

TLS: ours always (keys made by the cluster object). jobqueue: `security=True` (dask's
`Security.temporary()`, the certificate written to a 0700 folder for the jobs) unless
`--jobqueue-no-tls` (then plain TCP). Both listen on loopback (jobqueue `interface="lo"`;
single node).

Run as a normal user (not root: the jobs' mpirun refuses root), after `stack.py up`:
  python benchmarks/b9_job_clusters.py [--sizes 4 16 64] [--runs 1] [--limit 300] [--no-save]
(needs dask-jobqueue in the venv: pip install dask-jobqueue)
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PARTITION = "debug"
WORKER_MEMORY = "256MiB"
WALLTIME = "00:20:00"
CLOSE_LIMIT = 120.0  # seconds a run waits for its jobs to leave the queue after close()
USER = getpass.getuser()


# ------------------------------------------------------------------ Slurm, read-only helpers
def squeue(*args: str) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True,
                         timeout=60).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def own_jobs(name: str | None = None) -> list[list[str]]:
    """This user's jobs (of that job name): [id, name, state, cpus, reason]."""
    return squeue("-u", USER, *([f"--name={name}"] if name else []), "-o", "%i|%j|%T|%C|%R")


def others_cpus() -> int:
    """CPUs that other users' running jobs hold on the node now."""
    return sum(int(j[2]) for j in squeue("-t", "RUNNING", "-o", "%u|%i|%C")
               if j[0] != USER and j[2].isdigit())


def node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%c"], capture_output=True,
                         text=True, timeout=60).stdout.split()
    return max((int(x.rstrip("+")) for x in out if x.rstrip("+").isdigit()), default=16)


def ours_shape(n: int, max_ranks: int) -> dict:
    """The fewest jobs of at most max_ranks ranks for n workers, then the fewest ranks; the
    cluster makes its last joining job only as big as the workers still missing."""
    for jobs in range(1, 1000):
        for cores in range(3, max_ranks + 1):
            if (cores - 2) + (jobs - 1) * (cores - 1) >= n:
                last = n - (cores - 2) - (jobs - 2) * (cores - 1) + 1 if jobs > 1 else cores
                ranks = cores + max(jobs - 2, 0) * cores + (last if jobs > 1 else 0)
                return {"cores": cores, "jobs": jobs, "ranks": ranks, "workers": n}
    raise ValueError(n)


# ------------------------------------------------------------------ one run (a child process)
class Progress:
    """What the run reached so far, kept in a file the parent reads even after a kill."""

    def __init__(self, path: str):
        self.path, self.data = path, {}

    def mark(self, **kw) -> None:
        self.data.update(kw)
        tmp = self.path + ".tmp"
        Path(tmp).write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


def wait_gone(name: str, t0: float) -> float | None:
    while own_jobs(name):
        if time.time() - t0 > CLOSE_LIMIT:
            return None
        time.sleep(0.2)
    return round(time.time() - t0, 2)


def oversubscribed_template(folder: str) -> str:
    """The packaged Slurm template with `#SBATCH --oversubscribe` (MPIJobCluster's template=)."""
    from importlib.resources import files

    text = files("dask_mpi_lx_hooks").joinpath("templates", "slurm.sh.j2").read_text()
    marker = "#SBATCH --no-requeue\n"
    assert marker in text, "the packaged template changed"
    path = os.path.join(folder, "slurm-oversubscribe.sh.j2")
    Path(path).write_text(text.replace(marker, marker + "#SBATCH --oversubscribe\n"))
    return path


def measure(p: Progress, n: int, limit: float, make_cluster, job_name_of) -> None:
    """Constructor -> Client sees n workers -> jobs -> close -> no jobs; into p."""
    from distributed import Client

    watchdog = threading.Timer(limit, lambda: (p.mark(
        error=f"the constructor did not return within {limit:g} s",
        jobs_then=own_jobs()), os._exit(3)))
    watchdog.start()
    t0 = time.time()
    p.mark(stage="constructor", t0=t0)
    try:
        cluster = make_cluster()
    finally:
        watchdog.cancel()
    name = job_name_of(cluster)
    p.mark(stage="scale", constructed_s=round(time.time() - t0, 2), job_name=name)
    client = None
    try:
        cluster.scale(n)
        p.mark(stage="wait_for_workers", scale_returned_s=round(time.time() - t0, 2))
        client = Client(cluster)
        try:
            client.wait_for_workers(n, timeout=max(1.0, limit - (time.time() - t0)))
            ready = round(time.time() - t0, 2)
            jobs = own_jobs(name)
            p.mark(stage="close", ok=True, ready_s=ready, jobs=len(jobs),
                   job_states=sorted({j[2] for j in jobs}),
                   workers_seen=len(client.scheduler_info()["workers"]))
        except Exception as e:  # TimeoutError: how far it got
            p.mark(stage="close", ok=False, error=f"{type(e).__name__}: {e}",
                   workers_seen=len(client.scheduler_info()["workers"]), jobs_then=own_jobs(name))
    except Exception as e:
        p.mark(stage="close", ok=False, error=f"{type(e).__name__}: {e}", jobs_then=own_jobs(name))
    finally:
        tc = time.time()
        if client is not None:
            client.close()
        cluster.close()
        p.mark(close_returned_s=round(time.time() - tc, 2), close_s=wait_gone(name, tc),
               stage="done")


def child(variant: str, n: int, cores: int, limit: float, progress: str,
          oversubscribe: bool, tls: bool) -> None:
    p = Progress(progress)
    folder = os.path.join(os.path.dirname(progress), "work")  # in the parent's 0700 folder:
    os.mkdir(folder, 0o700)  # jobqueue's keys and job logs; removed by the parent after exit
    if variant == "ours":
        from dask_mpi_lx import MPIJobCluster

        template = oversubscribed_template(folder) if oversubscribe else None

        def make():
            return MPIJobCluster(cores=cores, worker_memory=WORKER_MEMORY, walltime=WALLTIME,
                                 queue=PARTITION, template=template)

        measure(p, n, limit, make, lambda c: f"dmlx-{c.cluster_id}")
    else:
        from dask_jobqueue import SLURMCluster

        name = f"b9jq-{secrets.token_hex(3)}"

        def make():
            return SLURMCluster(
                cores=1, processes=1, memory=WORKER_MEMORY, walltime=WALLTIME, queue=PARTITION,
                job_name=name, python=sys.executable, interface="lo",
                job_extra_directives=["--oversubscribe"] if oversubscribe else [],
                security=True if tls else None, shared_temp_directory=folder,
                log_directory=folder, scheduler_options={"dashboard_address": ":0"})

        measure(p, n, limit, make, lambda c: name)


# ------------------------------------------------------------------ the parent
def cancel_new(before: set[str]) -> list[str]:
    """Cancel this user's jobs that were not there before the run; wait until they are gone."""
    new = [j[0] for j in own_jobs() if j[0] not in before]
    if new:
        subprocess.run(["scancel", *new], capture_output=True, timeout=60)
        t0 = time.time()
        while any(j[0] in new for j in own_jobs()) and time.time() - t0 < 60:
            time.sleep(0.5)
    return new


def job_log_tails(got: dict, folder: str, lines: int = 6) -> dict:
    """The last lines of the run's job logs (ours: ~/dask-mpi-lx-<id>.log; jobqueue's folder)."""
    ids = [j[0] for j in got.get("jobs_then") or []]
    paths = [os.path.expanduser(f"~/dask-mpi-lx-{i}.log") for i in ids]
    if os.path.isdir(folder):
        paths += sorted(str(p) for p in Path(folder).glob("*.err"))[:3]
    tails = {}
    for path in paths[:4]:
        if os.path.exists(path):
            tails[os.path.basename(path)] = Path(path).read_text(errors="replace").splitlines()[-lines:]
    return tails


def one_run(variant: str, n: int, cores: int, args) -> dict:
    before = {j[0] for j in own_jobs()}
    others = others_cpus()
    others_jobs = [j for j in squeue("-o", "%u|%i|%T|%C") if j[0] != USER]
    with tempfile.TemporaryDirectory(prefix="b9run-") as tmp:
        progress = os.path.join(tmp, "progress.json")
        argv = [sys.executable, os.path.abspath(__file__), "--child", variant, str(n),
                "--cores", str(cores), "--limit", str(args.limit), "--progress", progress,
                "--oversubscribe", args.oversubscribe]
        if args.jobqueue_no_tls:
            argv.append("--jobqueue-no-tls")
        with open(os.path.join(tmp, "child.log"), "w+") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=args.limit + CLOSE_LIMIT + 60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = "killed"
            log.seek(0)
            tail = [line.rstrip() for line in log.read().splitlines()
                    if "Traceback" in line or "Error" in line or "ERROR" in line][-8:]
        got = json.loads(Path(progress).read_text()) if os.path.exists(progress) else {}
        job_logs = job_log_tails(got, os.path.join(tmp, "work"))
    got.pop("t0", None)
    left = cancel_new(before)
    result = {"ok": bool(got.get("ok")) and rc == 0, **got, "others_cpus_at_start": others,
              "others_jobs_at_start": len(others_jobs)}
    if not result["ok"]:
        result.setdefault("error", f"child exit {rc} at stage {got.get('stage')}")
        result["exit"] = rc
        result["error_log_lines"] = tail
        result["job_log_tails"] = job_logs
    if left:  # still queued after the run: cancelled here
        result["cancelled_after"] = left
    return result


def summary(runs: list[dict]) -> dict:
    from common import median

    ok = [r for r in runs if r["ok"]]
    return {"ready_s": median([r["ready_s"] for r in ok]),
            "jobs": max((r["jobs"] for r in ok), default=None),
            "close_s": median([r["close_s"] for r in ok if r.get("close_s") is not None]),
            "failures": len(runs) - len(ok), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--limit", type=float, default=300, help="seconds per run to N workers")
    ap.add_argument("--max-ranks", type=int, default=None,
                    help="ranks per job of ours (default: the partition's CPUs per node)")
    ap.add_argument("--oversubscribe", choices=("always", "never"), default="always")
    ap.add_argument("--jobqueue-no-tls", action="store_true")
    ap.add_argument("--only", choices=("ours", "jobqueue"), default=None)
    ap.add_argument("--no-save", action="store_true", help="print only; keep no results file")
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--cores", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--progress", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.cores, args.limit, args.progress,
              args.oversubscribe == "always", not args.jobqueue_no_tls)
        return
    if os.geteuid() == 0:
        sys.exit("run as a normal user: jobs as root would need mpirun --allow-run-as-root")
    import dask_jobqueue
    from common import emit

    cpus = node_cpus()
    max_ranks = args.max_ranks or cpus
    real = os.cpu_count()
    variants = [args.only] if args.only else ["ours", "jobqueue"]
    rows = []
    for n in args.sizes:
        shape = ours_shape(n, max_ranks)
        per = {v: [] for v in variants}
        for _ in range(args.runs):
            for v in variants:  # alternating
                per[v].append(one_run(v, n, shape["cores"], args))
                print(f"N={n} {v}: {json.dumps(per[v][-1])}", file=sys.stderr, flush=True)
        row = {"workers": n,
               "ours_shape": {**shape, "memory_per_worker": WORKER_MEMORY},
               "jobqueue_shape": {"jobs": n, "ranks": n, "cores_per_job": 1},
               "oversubscription": {
                   "ours_processes": shape["ranks"], "jobqueue_processes": n + 1,
                   "real_cores": real, "node_cpus": cpus,
                   "note": (f"{shape['ranks']} MPI ranks (ours) / {n} worker jobs + this "
                            f"process's scheduler (jobqueue) on {real} real cores"
                            + (": heavily oversubscribed, expected" if n > 4 * (real or 1)
                               else "") +
                            (f"; ours needs {shape['ranks']} job CPUs, more than the node's "
                             f"{cpus}: its jobs run only with --oversubscribe"
                             if shape["ranks"] > cpus else "") +
                            (f"; more than {4 * cpus} (OverSubscribe=YES:4 x {cpus} CPUs): "
                             "Slurm cannot run all of ours' jobs at once"
                             if shape["ranks"] > 4 * cpus else ""))}}
        for v in variants:
            row[v] = summary(per[v])
        if len(variants) == 2 and row["ours"]["ready_s"] and row["jobqueue"]["ready_s"]:
            row["ratio"] = round(row["ours"]["ready_s"] / row["jobqueue"]["ready_s"], 3)
        else:
            row["ratio"] = None
        rows.append(row)
    subprocess.run(["scancel", "-u", USER], capture_output=True, timeout=60)  # ours, all of it
    emit({"benchmark": "B9 MPIJobCluster vs dask-jobqueue SLURMCluster",
          "partition": PARTITION, "node_cpus": cpus, "limit_s": args.limit,
          "runs": args.runs, "walltime": WALLTIME, "worker_memory": WORKER_MEMORY,
          "oversubscribe_flag": args.oversubscribe == "always",
          "tls": {"ours": True, "jobqueue": not args.jobqueue_no_tls},
          "dask_jobqueue": dask_jobqueue.__version__, "rows": rows},
         "b9_job_clusters", save=not args.no_save)


if __name__ == "__main__":
    main()
