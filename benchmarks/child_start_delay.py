"""How much later the notebook (rank 0's child) starts because of the Dask cluster.

Compares, alternating run by run, the time from the start to the child running: started
directly (plain batchspawner: no MPI); by `mpirun -np N dask-mpi-lx launch
--wait-for-workers` (rank 0 starts it once every worker is in); and with
`--no-wait-for-workers` (at once; what the hub spawner uses). Prints one JSON line.

Run: python benchmarks/child_start_delay.py [--ranks 4 8] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, emit, mpirun

CHILD = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time()))"


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
    rows = []
    for np in args.ranks:
        direct, waiting, early = [], [], []
        for _ in range(args.runs):
            direct.append(child_start([]))
            launch = mpirun(np) + [str(BIN / "dask-mpi-lx"), "launch"]
            waiting.append(child_start(launch + ["--wait-for-workers", "--"]))
            early.append(child_start(launch + ["--no-wait-for-workers", "--"]))
        rows.append({"ranks": np, "direct_s": round(statistics.median(direct), 3),
                     "wait_for_workers_s": round(statistics.median(waiting), 3),
                     "no_wait_s": round(statistics.median(early), 3)})
    out["rows"] = rows
    emit(out, "child_start_delay")


if __name__ == "__main__":
    main()
