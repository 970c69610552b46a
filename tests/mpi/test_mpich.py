"""The launcher under MPICH's mpiexec (Hydra), from its own venv (PyPI `mpich` + mpi4py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest, mpirun

pytestmark = [pytest.mark.mpi, pytest.mark.mpich]


@pytest.fixture
def mpich_bin() -> Path:
    return conftest.mpich_bin()


def test_launch_and_compute_under_mpich(mpich_bin):
    code = ("from distributed import Client; c = Client(); "
            "print('WORKERS', len(c.scheduler_info()['workers']), c.submit(sum, [1, 2]).result());"
            "from mpi4py import MPI; print('MPI', MPI.Get_library_version().split()[0], "
            "MPI.COMM_WORLD.Get_size())")
    result = mpirun.run([str(mpich_bin / "dask-mpi-lx"), "launch", "--", str(mpich_bin / "python"),
                         "-c", code], np=4, timeout=120, launcher="mpich",
                        env={"MPICH_MPIEXEC": str(mpich_bin / "mpiexec")})
    assert result.returncode == 0, result.describe()
    assert "WORKERS 2 3" in result.stdout, result.describe()
    assert "MPI MPICH 1" in result.stdout, result.describe()  # the notebook is a singleton
    assert "cluster stopped" in result.stderr
