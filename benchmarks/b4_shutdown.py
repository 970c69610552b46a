"""B4: shutdown. (1) notebook exit -> every rank gone, under mpirun; (2) scancel -> every
rank gone, in a Slurm job (needs the local stack's Slurm: etc/local/stack.py up).

Run: python benchmarks/b4_shutdown.py [--ranks 4 8] [--runs 3] [--no-slurm]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, emit, median, mpirun, submit_launch_job

CHILD_EXIT = """
import sys, time
from distributed import Client
Client().close()
open(sys.argv[1], "w").write(repr(time.time()))
"""

CHILD_WAIT = """
import sys, time
from distributed import Client
Client().close()
open(sys.argv[1], "w").write(repr(time.time()))
time.sleep(3600)
"""


def rank_processes(marker: str) -> int:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if marker in line and "ps -eo" not in line)


def notebook_exit(np: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        stamp = Path(tmp) / "exit"
        subprocess.run(mpirun(np) + [str(BIN / "dask-mpi-lx"), "launch", "--job-directory", tmp,
                                     "--", sys.executable, "-c", CHILD_EXIT, str(stamp)],
                       capture_output=True, timeout=300, check=True)
        t_end = time.time()
        assert rank_processes(tmp) == 0
        return t_end - float(stamp.read_text())


def scancel(np: int) -> float:
    job, tmp = submit_launch_job(np, CHILD_WAIT, ["{dir}/ready"], "b4-",
                                 ["--job-directory", "{dir}"])
    stamp = tmp / "ready"
    deadline = time.time() + 120
    while not stamp.exists() and time.time() < deadline:
        time.sleep(0.1)
    t0 = time.time()
    subprocess.run(["scancel", job], check=True)
    while time.time() - t0 < 60:
        queued = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
        if rank_processes(str(tmp)) == 0 and not queued.stdout.strip():
            break
        time.sleep(0.05)
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-slurm", action="store_true")
    args = ap.parse_args()
    rows = []
    for np in args.ranks:
        exits = [notebook_exit(np) for _ in range(args.runs)]
        row = {"ranks": np, "notebook_exit_to_all_gone_s": median(exits),
               "notebook_exit_runs_s": [round(x, 3) for x in exits]}
        if not args.no_slurm:
            cancels = [scancel(np) for _ in range(args.runs)]
            row["scancel_to_all_gone_s"] = median(cancels)
            row["scancel_runs_s"] = [round(x, 3) for x in cancels]
        rows.append(row)
    emit({"benchmark": "B4 shutdown", "rows": rows, "slurm_killwait_s": 5,
          "target": "<= 5 s and within KillWait"}, "b4_shutdown")


if __name__ == "__main__":
    main()
