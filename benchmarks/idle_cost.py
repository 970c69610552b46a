"""B6: CPU (share of one core) and unique memory of idle ranks, ours vs the upstream dask-mpi CLI.

Run: python benchmarks/idle_cost.py [--ranks 4] [--seconds 10]
Prints one JSON line. Needs Open MPI's mpirun; upstream needs the `dask-mpi` package.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CLK = os.sysconf("SC_CLK_TCK")


def mpirun(np: int) -> list[str]:
    argv = ["mpirun", "-np", str(np), "--oversubscribe"]
    if os.geteuid() == 0:
        argv.insert(1, "--allow-run-as-root")
    return argv


def descendants(root: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines()[1:]:
        pid, ppid = map(int, line.split())
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            found.append(c)
            todo.append(c)
    return found


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def uss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    kb = sum(int(line.split()[1]) for line in text.splitlines()
             if line.startswith(("Private_Clean", "Private_Dirty")))
    return kb / 1024


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def measure(argv: list[str], settle: float, seconds: float) -> dict:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        time.sleep(settle)
        pids = [p for p in descendants(proc.pid) if "orted" not in cmdline(p)]
        before = {p: cpu_ticks(p) for p in pids}
        time.sleep(seconds)
        rows = []
        for p in pids:
            try:
                share = (cpu_ticks(p) - before[p]) / CLK / seconds
            except OSError:
                continue
            rows.append({"pid": p, "cmd": cmdline(p)[:80], "cpu": round(share, 4),
                         "uss_mb": round(uss_mb(p), 1)})
        return {"processes": rows}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--settle", type=float, default=8)
    args = ap.parse_args()
    results = {"benchmark": "B6 idle cost", "ranks": args.ranks, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure(mpirun(args.ranks) + [str(BIN / "dask-mpi-lx"), "launch", "--",
                                             "sleep", "3600"], args.settle, args.seconds)
        results["ours"] = ours
        if (BIN / "dask-mpi").exists():
            results["upstream_cli"] = measure(
                mpirun(args.ranks) + [str(BIN / "dask-mpi"), "--scheduler-file",
                                      f"{tmp}/s.json", "--no-scheduler"
                                      if False else "--name", "w"], args.settle, args.seconds)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
