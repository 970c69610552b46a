import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def missing_real_part(message: str) -> None:
    """A real part (MPI, Slurm, the hub, a browser) is missing: a failure under CI=true,
    where `make test` must have installed it; a skip with the reason elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def dask_mpi_lx_cmd() -> list[str]:
    """The launcher command as an installed user would run it."""
    exe = Path(sys.executable).parent / "dask-mpi-lx"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask_mpi_lx"]


@pytest.fixture
def probe() -> list[str]:
    return [sys.executable, str(ROOT / "tests" / "probes" / "notebook_probe.py")]


@pytest.fixture(autouse=True)
def _no_inherited_cluster(monkeypatch):
    """Tests start from a clean slate: no address or job config from the outer shell."""
    for name in ("DASK_SCHEDULER_ADDRESS", "DASK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    yield
    os.environ.pop("DASK_SCHEDULER_ADDRESS", None)


def mpich_bin() -> Path:
    """The MPICH venv's bin (PyPI `mpich` + mpi4py + this package), built by `make test`."""
    venv = Path(os.environ.get("MPICH_VENV", "/opt/dask-mpi-lx/venv-mpich"))
    if not (venv / "bin" / "mpiexec").exists():
        missing_real_part(f"no MPICH venv at {venv} (`make mpich-venv` builds it)")
    return venv / "bin"
