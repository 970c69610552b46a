"""B1: from `mpirun` start to all N workers connected, ours vs the upstream `dask-mpi` CLI.

Ours: `mpirun -np N+2 dask-mpi-lx launch -- child` (Nanny workers, TLS, dashboard): ready is
when rank 0 logs that the scheduler has all N workers. Upstream: `mpirun -np N+1 dask-mpi
--scheduler-file F` (Nanny workers, plain TCP, dashboard): ready is when a client, already
running, sees N workers. Runs alternate; medians. Error/traceback lines are counted in
everything each run printed, start to shutdown.

Run: python benchmarks/b1_cluster_ready.py [--workers 2 4 8 16 32 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import BIN, emit, error_lines, median, mpirun

CHILD = """
import sys
from distributed import Client
with Client(timeout="600s") as c:
    c.wait_for_workers(int(sys.argv[1]), timeout=600)
"""
READY = re.compile(r"^(\S+ \S+) dask-mpi-lx\[rank 0/.*Dask cluster ready at .* \((\d+) workers\)")


def ready_time(stderr: str, n: int) -> float:
    """When rank 0 logged that the scheduler had all n workers (log time, ms resolution)."""
    for line in stderr.splitlines():
        m = READY.match(line)
        if m and int(m.group(2)) == n:
            return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise RuntimeError("no 'Dask cluster ready' line with all workers:\n" + stderr[-2000:])


def ours(n: int) -> dict:
    t0 = time.time()
    p = subprocess.run(mpirun(n + 2) + [str(BIN / "dask-mpi-lx"), "launch",
                                        "--scheduler-timeout", "600", "--", sys.executable,
                                        "-c", CHILD, str(n)],
                       capture_output=True, text=True, timeout=900)
    t_end = time.time()
    ready = ready_time(p.stderr, n)
    return {"ready_s": ready - t0, "shutdown_s": t_end - ready, "rc": p.returncode,
            "error_lines": error_lines(p.stdout + p.stderr)}


def upstream(n: int) -> dict:
    from distributed import Client

    with tempfile.TemporaryDirectory() as tmp:
        sched = Path(tmp) / "scheduler.json"
        t0 = time.time()
        proc = subprocess.Popen(mpirun(n + 1) + [str(BIN / "dask-mpi"), "--scheduler-file",
                                                 str(sched), "--dashboard-address", ":0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        while not sched.exists():
            time.sleep(0.05)
        with Client(scheduler_file=str(sched), timeout="600s") as c:
            c.wait_for_workers(n, timeout=600)
            ready = time.time()
            c.shutdown()
        out, err = proc.communicate(timeout=300)
        t_end = time.time()
    return {"ready_s": ready - t0, "shutdown_s": t_end - ready, "rc": proc.returncode,
            "error_lines": error_lines(out + err)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--runs-large", type=int, default=1, help="runs for N >= 32")
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
    emit({"benchmark": "B1 cluster ready", "rows": rows,
          "target": "ours <= 1.2x upstream CLI"}, "b1_cluster_ready")


if __name__ == "__main__":
    main()
