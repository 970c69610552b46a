"""B6: CPU (share of one core) and unique memory (USS) of idle ranks, each rank counted with
the processes it started (a Nanny's worker process), ours vs the upstream `dask-mpi` CLI;
and of parked ranks (ours, after scale(1)).

Run: python benchmarks/b6_idle_cost.py [--ranks 6] [--seconds 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import psutil
from common import BIN, emit, median, mpirun, stop_group

PARK = """
import time
from dask_mpi_lx import MPICluster
c = MPICluster(); c.scale(1); print("PARKED", flush=True); time.sleep(3600)
"""


def subtree(proc: psutil.Process) -> list[psutil.Process]:
    """``proc`` and every process below it."""
    return [proc, *proc.children(recursive=True)]


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def uss_mb(proc: psutil.Process) -> float:
    return proc.memory_full_info().uss / 2**20


def cmd(proc: psutil.Process) -> str:
    return " ".join(proc.cmdline())


def rank_of(proc: psutil.Process) -> int:
    return int(proc.environ()["OMPI_COMM_WORLD_RANK"])


def label(rows: list, roles: dict) -> list:
    for r in rows:
        r["role"] = roles.get(r["rank"], "worker")
        if r["role"] == "worker" and not r["worker_process"]:
            r["role"] = "parked"
    return rows


def measure(argv: list[str], settle: float, seconds: float, ready_line: str | None = None) -> list:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        if ready_line:
            for line in proc.stdout:
                if line.startswith(ready_line):
                    break
        time.sleep(settle)
        ranks = [p for p in psutil.Process(proc.pid).children(recursive=True)
                 if p.cmdline() and p.cmdline()[0].endswith(("python", "python3"))
                 and ("launch" in cmd(p) or "dask-mpi " in cmd(p))]
        groups = {r: subtree(r) for r in ranks}
        before = {p.pid: cpu_seconds(p) for g in groups.values() for p in g}
        time.sleep(seconds)
        rows = []
        for r, g in groups.items():
            cpu = sum(cpu_seconds(p) - before[p.pid] for p in g) / seconds
            rows.append({"pid": r.pid, "rank": rank_of(r), "cpu": round(cpu, 4),
                         "uss_mb": round(sum(uss_mb(p) for p in g), 1), "processes": len(g),
                         "worker_process": any("multiprocessing.spawn" in cmd(p) or
                                               "forkserver" in cmd(p) for p in g[1:])})
        return rows
    finally:
        stop_group(proc)


def summary(rows: list, role: str) -> dict:
    sel = [r for r in rows if r["role"] == role]
    return {"count": len(sel), "cpu_median": median([r["cpu"] for r in sel]),
            "uss_mb_median": median([r["uss_mb"] for r in sel])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--settle", type=float, default=10)
    args = ap.parse_args()
    n = args.ranks
    ours = measure(mpirun(n) + [str(BIN / "dask-mpi-lx"), "launch", "--", "sleep", "3600"],
                   args.settle, args.seconds)
    parked = measure(mpirun(n) + [str(BIN / "dask-mpi-lx"), "launch", "--", sys.executable, "-c",
                                  PARK], args.settle, args.seconds, ready_line="PARKED")
    with tempfile.TemporaryDirectory() as tmp:
        upstream = measure(mpirun(n - 1) + [str(BIN / "dask-mpi"), "--scheduler-file",
                                            f"{tmp}/s.json", "--no-dashboard"],
                           args.settle, args.seconds)
    label(ours, {0: "notebook", 1: "scheduler"})
    label(parked, {0: "notebook", 1: "scheduler"})
    label(upstream, {0: "scheduler"})
    emit({"benchmark": "B6 idle cost", "ranks": n, "seconds": args.seconds,
          "ours": {"worker_rank": summary(ours, "worker"),
                   "scheduler_rank": summary(ours, "scheduler")},
          "ours_after_scale_1": {"worker_rank": summary(parked, "worker"),
                                 "parked_rank": summary(parked, "parked")},
          "upstream_cli": {"worker_rank": summary(upstream, "worker"),
                           "scheduler_rank": summary(upstream, "scheduler")},
          "target": "an idle worker rank under 2% of a core"}, "b6_idle_cost")


if __name__ == "__main__":
    main()
