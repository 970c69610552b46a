"""How much later the notebook (rank 0's child) starts because of the Dask cluster.

Compares, alternating run by run: the child started directly (plain batchspawner: no MPI),
and the child started by `mpirun -np N dask-mpi-lx launch -- child`, where rank 0 starts
the child once the scheduler and all workers are up. Prints one JSON line.

Run: python benchmarks/child_start_delay.py [--ranks 4 8] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CHILD = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time()))"


def mpirun(np: int) -> list[str]:
    argv = ["mpirun", "-np", str(np), "--oversubscribe"]
    if os.geteuid() == 0:
        argv.insert(1, "--allow-run-as-root")
    return argv


def child_start(prefix: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        stamp = Path(tmp) / "t"
        t0 = time.time()
        subprocess.run([*prefix, sys.executable, "-c", CHILD, str(stamp)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        return float(stamp.read_text()) - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    out = {"benchmark": "child start delay", "runs": args.runs, "cores": os.cpu_count()}
    for np in args.ranks:
        direct, launched = [], []
        for _ in range(args.runs):
            direct.append(child_start([]))
            launched.append(child_start(mpirun(np) + [str(BIN / "dask-mpi-lx"), "launch", "--"]))
        out[f"np{np}"] = {
            "direct_median_s": round(statistics.median(direct), 3),
            "launched_median_s": round(statistics.median(launched), 3),
            "delay_median_s": round(statistics.median(launched) - statistics.median(direct), 3),
            "launched_runs_s": [round(x, 3) for x in launched],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
