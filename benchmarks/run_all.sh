#!/usr/bin/env bash
# Every benchmark, one after the other (they share 2 cores: never run two at once), then the
# report (docs/benchmarks.md and its plot). `make bench` runs this. About 30 minutes here.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-python3}
$PY ../etc/local/stack.py up
for b in child_start_delay b6_idle_cost b5_throughput b4_shutdown b1_cluster_ready b3_hub_spawn b2_jobqueue; do
  echo ">> $b" >&2
  $PY "$b.py"
done
echo ">> b3_hub_spawn again with mpi-lx.notebook-host-nice: 0 (a site-wide setting the jobs read)" >&2
NICE0=/etc/dask/zz-benchmark-notebook-host-nice-0.yaml
mkdir -p /etc/dask
trap 'rm -f "$NICE0"' EXIT
printf 'mpi-lx:\n  notebook-host-nice: 0\n' > "$NICE0"
$PY b3_hub_spawn.py --name b3_hub_spawn_nice0
rm -f "$NICE0"
echo ">> b8_multinode (3 simulated nodes)" >&2
$PY ../etc/local/stack.py up --nodes 3
$PY b8_multinode.py
$PY ../etc/local/stack.py up --nodes 1
echo ">> b9_job_clusters (as bob: the jobs' mpirun refuses root)" >&2
runuser -u bob -- env -i HOME=/home/bob USER=bob LOGNAME=bob PATH="$(dirname "$(command -v "$PY")"):/usr/bin:/bin" \
  "$PY" b9_job_clusters.py --no-save | tail -1 > results/b9_job_clusters.json
$PY report.py
