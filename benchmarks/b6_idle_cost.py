"""B6: CPU (share of one core) and unique memory (USS) of idle ranks, each rank counted with
the processes it started (a Nanny's worker process), ours vs the upstream `dask-mpi` CLI;
and of parked ranks (ours, after scale(1)).

Run: python benchmarks/b6_idle_cost.py [--ranks 6] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, emit, median, mpirun, stop_group

CLK = os.sysconf("SC_CLK_TCK")
PARK = """
import time
from dask_mpi_lx import MPICluster
c = MPICluster(); c.scale(1); print("PARKED", flush=True); time.sleep(3600)
"""


def children() -> dict[int, list[int]]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    tree: dict[int, list[int]] = {}
    for line in out.splitlines():
        pid, ppid = map(int, line.split())
        tree.setdefault(ppid, []).append(pid)
    return tree


def subtree(pid: int, tree: dict[int, list[int]]) -> list[int]:
    found, todo = [pid], [pid]
    while todo:
        for c in tree.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def uss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return sum(int(x.split()[1]) for x in text.splitlines()
               if x.startswith(("Private_Clean", "Private_Dirty"))) / 1024


def cmd(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def rank_of(pid: int) -> int:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(x for x in env if x.startswith(b"OMPI_COMM_WORLD_RANK=")).split(b"=")[1])


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
        tree = children()
        ranks = [p for p in subtree(proc.pid, tree)[1:]  # [0] is mpirun itself
                 if cmd(p).split(" ")[0].endswith(("python", "python3"))
                 and ("launch" in cmd(p) or "dask-mpi " in cmd(p))]
        groups = {r: subtree(r, tree) for r in ranks}
        before = {p: ticks(p) for g in groups.values() for p in g}
        time.sleep(seconds)
        rows = []
        for r, g in groups.items():
            cpu = sum(ticks(p) - before[p] for p in g) / CLK / seconds
            rows.append({"pid": r, "rank": rank_of(r), "cpu": round(cpu, 4),
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
