"""B5: throughput through an attached MPICluster vs a LocalCluster of the same size.

Inside one launched job (N workers, 1 thread each, TLS), the child measures 10,000 tiny
tasks and a dask.array reduction, first on the job's cluster (MPICluster, attach mode),
then on LocalCluster(N, processes) without TLS and with TLS, alternating rounds.

Run: python benchmarks/b5_throughput.py [--workers 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import BIN, emit, mpirun

CHILD = r"""
import json, sys, time
import dask.array as da
from distributed import Client, LocalCluster
from dask_mpi_lx import MPICluster

n, rounds = int(sys.argv[1]), int(sys.argv[2])

def inc(x):
    return x + 1

def measure(client):
    client.wait_for_workers(n, timeout=120)
    t = time.perf_counter()
    assert sum(client.gather(client.map(inc, range(10_000), pure=False))) == 50_005_000
    tiny = 10_000 / (time.perf_counter() - t)
    x = da.ones((8000, 8000), chunks=(500, 500))
    t = time.perf_counter()
    assert float(x.sum().compute()) == 64_000_000.0
    return {"tiny_tasks_per_s": tiny, "array_s": time.perf_counter() - t}

out = {"mpi": [], "local": [], "local_tls": []}
mpi = MPICluster()
locals_ = {"local": LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None),
           "local_tls": LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None,
                                     security=True)}
for _ in range(rounds):
    with Client(mpi) as c:
        out["mpi"].append(measure(c))
    for name, cluster in locals_.items():
        with Client(cluster) as c:
            out[name].append(measure(c))
print("B5 " + json.dumps(out), flush=True)
mpi.close()
for cluster in locals_.values():
    cluster.close()
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    p = subprocess.run(mpirun(args.workers + 2) + [str(BIN / "dask-mpi-lx"), "launch", "--",
                                                   sys.executable, "-c", CHILD,
                                                   str(args.workers), str(args.rounds)],
                       capture_output=True, text=True, timeout=1800)
    line = next((x for x in p.stdout.splitlines() if x.startswith("B5 ")), None)
    if line is None:
        raise SystemExit(f"no result (rc {p.returncode})\n{p.stderr[-3000:]}")
    raw = json.loads(line[3:])
    import statistics

    summary = {}
    for name, rounds in raw.items():
        summary[name] = {
            "tiny_tasks_per_s": round(statistics.median(r["tiny_tasks_per_s"] for r in rounds), 1),
            "array_s": round(statistics.median(r["array_s"] for r in rounds), 3)}
    ratios = {f"vs_{ref}": {
        "tiny_tasks": round(summary["mpi"]["tiny_tasks_per_s"] / summary[ref]["tiny_tasks_per_s"], 3),
        "array": round(summary[ref]["array_s"] / summary["mpi"]["array_s"], 3)}
        for ref in ("local", "local_tls")}
    emit({"benchmark": "B5 throughput", "workers": args.workers, "rounds": args.rounds,
          "median": summary, "throughput_ratio": ratios,
          "target": ">= 0.95x LocalCluster throughput"}, "b5_throughput")


if __name__ == "__main__":
    main()
