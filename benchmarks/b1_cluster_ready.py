"""B1: from `mpirun` start until a client sees all N workers, ours vs the upstream `dask-mpi` CLI.

Both are timed the same way: a client in this process, started with the job and polling
for the cluster's connection details, connects and waits until it sees N workers; "ready"
is when it does. Ours: `mpirun -np N+2 dask-mpi-lx launch --job-directory D -- child`
(Nanny workers, TLS, dashboard); the client polls for the job's dask config (address and
TLS keys), which rank 0 writes once the scheduler reported its workers. Upstream: `mpirun
-np N+1 dask-mpi --scheduler-file F` (Nanny workers, plain TCP, dashboard); the client
polls for F. Runs alternate; medians. Error/traceback lines are counted in everything each
run printed, start to shutdown.

The worker counts are checked, and a wrong one fails the run: the client must see exactly
N; ours must log no "only X of N workers registered", every "Dask cluster ready (K
workers)" line must say N, and the command rank 0 starts (it starts once the scheduler
reported the workers) must see N at once.

Run: python benchmarks/b1_cluster_ready.py [--workers 2 4 8 16 32 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dask
from common import BIN, emit, error_lines, flat, job_dask_config, median, mpirun, stop_group
from distributed import Client  # before any dask.config.set: it adds its defaults on import

# rank 0's command: says how many workers it sees when it starts, then keeps the cluster up
# until the benchmark's client is done (the file in argv[2] appears)
CHILD = """
import os, sys, time
import dask
from distributed import Client
n, done = int(sys.argv[1]), sys.argv[2]
if not dask.config.get("scheduler-address", None):  # no cluster: no LocalCluster instead
    print("B1 command sees 0 workers", flush=True)
    sys.exit(3)
with Client(timeout="600s") as c:
    print("B1 command sees", len(c.nthreads()), "workers", flush=True)
    c.wait_for_workers(n, timeout=600)
    end = time.monotonic() + 900
    while not os.path.exists(done) and time.monotonic() < end:
        time.sleep(0.05)
"""
READY = re.compile(r"^\S+ \S+ dask-mpi-lx\[rank 0/.*Dask cluster ready at .* \((\d+) workers\)")
SHORT = re.compile(r"only (\d+) of (\d+) workers registered")
SEEN = re.compile(r"^B1 command sees (\d+) workers$", re.MULTILINE)
WAIT_S = 600.0
AtReady = Callable[[], None] | None


class WrongCount(RuntimeError):
    pass


def check_counts(n: int, client_saw: int, stdout: str, stderr: str) -> None:
    """Fail unless every worker count ours reported is ``n``."""
    problems = []
    if client_saw != n:
        problems.append(f"the client saw {client_saw} workers")
    ready = [int(m.group(1)) for m in map(READY.match, stderr.splitlines()) if m]
    if not ready:
        problems.append("no 'Dask cluster ready' line")
    problems += [f"'Dask cluster ready' says {k} workers" for k in ready if k != n]
    problems += [f"the scheduler went ahead with {m.group(1)} of {m.group(2)} workers"
                 for m in SHORT.finditer(stderr)]
    seen = [int(k) for k in SEEN.findall(stdout)]
    if not seen:
        problems.append("the command did not say how many workers it saw")
    problems += [f"the command saw {k} workers when it started" for k in seen if k != n]
    if problems:
        raise WrongCount(f"ours, N={n}: " + "; ".join(problems) + "\n" + stderr[-2000:])


def _wait_for_file(path_of, proc: subprocess.Popen, what: str) -> Path:
    """Poll (every 50 ms) until ``path_of()`` returns a path; fail if mpirun ends first."""
    end = time.monotonic() + WAIT_S
    while (path := path_of()) is None:
        if proc.poll() is not None:
            raise RuntimeError(f"mpirun exited ({proc.returncode}) before {what} appeared")
        if time.monotonic() > end:
            raise RuntimeError(f"no {what} after {WAIT_S:g}s")
        time.sleep(0.05)
    return path


def _client_sees(n: int, address: str | None = None, scheduler_file: str | None = None,
                 shutdown: bool = False, at_ready: AtReady = None) -> tuple[float, int]:
    """Connect and wait for ``n`` workers; when that was, and how many the client saw.
    ``at_ready``: called then, with the cluster up. ``shutdown``: then shut the cluster down
    (how the upstream CLI's job ends)."""
    with Client(address, scheduler_file=scheduler_file, timeout=f"{WAIT_S:g}s") as c:
        c.wait_for_workers(n, timeout=WAIT_S)
        ready = time.time()
        saw = len(c.nthreads())
        if at_ready:
            at_ready()
        if shutdown:
            c.shutdown()
    return ready, saw


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, err = proc.communicate()
        raise RuntimeError("the job did not end within 300s after the client was done:\n"
                           + err[-2000:]) from None


def ours(n: int, at_ready: AtReady = None) -> dict:
    """One run of ours with ``n`` workers (``at_ready``: see `_client_sees`)."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs, done = Path(tmp) / "jobs", Path(tmp) / "done"
        jobs.mkdir()
        t0 = time.time()
        proc = subprocess.Popen(mpirun(n + 2) + [str(BIN / "dask-mpi-lx"), "launch",
                                                 "--scheduler-timeout", "600",
                                                 "--job-directory", str(jobs), "--",
                                                 sys.executable, "-c", CHILD, str(n), str(done)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            cfg = job_dask_config(jobs, lambda: proc.poll() is None, WAIT_S)
            with dask.config.set(flat({"distributed": cfg.get("distributed", {})})):
                ready, saw = _client_sees(n, address=cfg["scheduler-address"], at_ready=at_ready)
        except BaseException:
            stop_group(proc)
            raise
        finally:
            done.touch()
        out, err = _finish(proc)
        t_end = time.time()
    check_counts(n, saw, out, err)
    return {"ready_s": ready - t0, "shutdown_s": t_end - ready, "rc": proc.returncode,
            "error_lines": error_lines(out + err), "stdout": out, "stderr": err}


def upstream(n: int, at_ready: AtReady = None) -> dict:
    """One run of the upstream CLI with ``n`` workers (``at_ready``: see `_client_sees`)."""
    with tempfile.TemporaryDirectory() as tmp:
        sched = Path(tmp) / "scheduler.json"
        t0 = time.time()
        proc = subprocess.Popen(mpirun(n + 1) + [str(BIN / "dask-mpi"), "--scheduler-file",
                                                 str(sched), "--dashboard-address", ":0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            _wait_for_file(lambda: sched if sched.exists() else None, proc, "the scheduler file")
            ready, saw = _client_sees(n, scheduler_file=str(sched), shutdown=True,
                                      at_ready=at_ready)
        except BaseException:
            stop_group(proc)
            raise
        out, err = _finish(proc)
        t_end = time.time()
    if saw != n:
        raise WrongCount(f"upstream, N={n}: the client saw {saw} workers")
    return {"ready_s": ready - t0, "shutdown_s": t_end - ready, "rc": proc.returncode,
            "error_lines": error_lines(out + err), "stdout": out, "stderr": err}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--runs-large", type=int, default=1, help="runs for N >= 32")
    ap.add_argument("--no-save", action="store_true",
                    help="print the JSON line only; keep benchmarks/results as it is")
    args = ap.parse_args()
    rows = []
    for n in args.workers:
        runs = args.runs if n < 32 else args.runs_large
        a, b = [], []
        for _ in range(runs):
            a.append(ours(n))
            b.append(upstream(n))
        row = {"workers": n, "runs": runs}
        for name, rs in (("ours", a), ("upstream", b)):
            row[name] = {"ready_s": median([r["ready_s"] for r in rs]),
                         "shutdown_s": median([r["shutdown_s"] for r in rs]),
                         "error_lines": max(r["error_lines"] for r in rs),
                         "rc": sorted({r["rc"] for r in rs})}
        row["ratio"] = round(row["ours"]["ready_s"] / row["upstream"]["ready_s"], 3)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    emit({"benchmark": "B1 cluster ready", "timed_by": "client", "rows": rows,
          "target": "ours <= 1.2x upstream CLI"}, "b1_cluster_ready", save=not args.no_save)


if __name__ == "__main__":
    main()
