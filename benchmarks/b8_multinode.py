"""B8: the cost of crossing hosts. Time from `mpirun` start to a client that sees N workers,
on 1, 2 and 3 simulated Slurm nodes (etc/local/nodes.py), the same N each time; ours
(`dask-mpi-lx launch`: Nanny workers, TLS) and the upstream `dask-mpi` CLI (Nanny workers,
plain TCP) side by side, each in its own Slurm job on the same nodes, runs alternating.

Both are timed the same way: a client inside the job that sees N workers. The ranks are
spread evenly over the nodes (`--map-by ppr:P:node`), so with 2 or 3 nodes the workers of
both sit on several hosts. All "nodes" share this machine's cores: the figures show what
crossing a (veth) network costs in start-up, not a real interconnect.

Run as root: python benchmarks/b8_multinode.py [--workers 4] [--nodes 1 2 3] [--runs 3]
(`stack.py up --nodes 3` first; `make bench` does it.)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, emit, error_lines, median

USER = "alice"
CLIENT = """
import json, sys, time
from distributed import Client
with Client({address}timeout="300s") as c:
    c.wait_for_workers(int(sys.argv[1]), timeout=300)
    hosts = sorted({{w["host"] for w in c.scheduler_info()["workers"].values()}})
    print("B8 " + json.dumps({{"ready": time.time(), "hosts": hosts,
                              "workers": len(c.scheduler_info()["workers"])}}), flush=True)
    {shutdown}
"""

OURS = """#!/bin/bash
t0=$(date +%s.%N)
echo "B8T0 $t0"
mpirun --oversubscribe --map-by ppr:{ppr}:node -np {np} {bin}/dask-mpi-lx launch -- \\
  {py} {client} {n}
echo "B8END $(date +%s.%N)"
"""

UPSTREAM = """#!/bin/bash
sched=$(mktemp -u /tmp/b8-sched-XXXXXX.json)
t0=$(date +%s.%N)
echo "B8T0 $t0"
mpirun --oversubscribe --map-by ppr:{ppr}:node -np {np} {bin}/dask-mpi --scheduler-file $sched \\
  --dashboard-address :0 &
while [ ! -s $sched ]; do sleep 0.05; done
SCHED=$sched {py} {client} {n}
wait
echo "B8END $(date +%s.%N)"
rm -f $sched
"""


def run_job(kind: str, nodes: int, n: int, tmp: Path) -> dict:
    ranks = n + 2 if kind == "ours" else n + 1
    client = tmp / f"client-{kind}.py"
    address = "" if kind == "ours" else 'scheduler_file=__import__("os").environ["SCHED"], '
    shutdown = "pass" if kind == "ours" else "c.shutdown()"
    client.write_text(CLIENT.format(address=address, shutdown=shutdown))
    script = tmp / f"job-{kind}.sh"
    script.write_text((OURS if kind == "ours" else UPSTREAM).format(
        ppr=math.ceil(ranks / nodes), np=ranks, bin=BIN, py=sys.executable, client=client, n=n))
    script.chmod(0o755)
    out = tmp / f"out-{kind}-{nodes}.log"
    subprocess.run(["runuser", "-u", USER, "--", "sbatch", "-W", "--nodes", str(nodes),
                    "--ntasks", str(nodes), "--ntasks-per-node", "1", "-o", str(out),
                    str(script)], check=True, capture_output=True, timeout=900, cwd=tmp)
    text = out.read_text()
    t0 = float(next(x.split()[1] for x in text.splitlines() if x.startswith("B8T0 ")))
    end = float(next(x.split()[1] for x in text.splitlines() if x.startswith("B8END ")))
    facts = json.loads(next(x[3:] for x in text.splitlines() if x.startswith("B8 ")))
    assert facts["workers"] == n, facts
    return {"ready_s": facts["ready"] - t0, "shutdown_s": end - facts["ready"],
            "hosts": len(facts["hosts"]), "error_lines": error_lines(text)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="b8-") as tmpdir:
        tmp = Path(tmpdir)
        shutil.chown(tmp, USER)  # the jobs write their logs here
        for nodes in args.nodes:
            results = {"ours": [], "upstream": []}
            for _ in range(args.runs):
                for kind in results:
                    results[kind].append(run_job(kind, nodes, args.workers, tmp))
            row = {"nodes": nodes, "workers": args.workers, "runs": args.runs}
            for kind, rs in results.items():
                row[kind] = {"ready_s": median([r["ready_s"] for r in rs]),
                             "ready_spread_s": [round(min(r["ready_s"] for r in rs), 3),
                                                round(max(r["ready_s"] for r in rs), 3)],
                             "shutdown_s": median([r["shutdown_s"] for r in rs]),
                             "worker_hosts": max(r["hosts"] for r in rs),
                             "error_lines": max(r["error_lines"] for r in rs)}
            row["ratio"] = round(row["ours"]["ready_s"] / row["upstream"]["ready_s"], 3)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
            time.sleep(1)
    base = {kind: rows[0][kind]["ready_s"] for kind in ("ours", "upstream")} if rows else {}
    for row in rows:
        row["vs_one_node"] = {k: round(row[k]["ready_s"] / base[k], 3) for k in base}
    emit({"benchmark": "B8 multi-node cluster ready", "rows": rows,
          "note": "simulated nodes: network namespaces on one 2-core machine"}, "b8_multinode")


if __name__ == "__main__":
    main()
