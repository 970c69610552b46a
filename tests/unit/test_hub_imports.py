"""The hub side imports nothing of the compute side: `pip install dask-mpi-lx[hub]` brings
no mpi4py, distributed, dask or cryptography onto the hub host."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

COMPUTE = ("mpi4py", "distributed", "dask", "cryptography", "dask_mpi_lx")

BLOCKED_IMPORT = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {COMPUTE!r}:
            raise ImportError("the hub must not import " + name)
sys.meta_path.insert(0, Block())
from dask_mpi_lx_hooks.spawner import DaskMPIPBSSpawner, DaskMPISlurmSpawner
from dask_mpi_lx_hooks.options import Limits, validate
validate({{"cores": 6, "nodes": 2}}, Limits(max_nodes=2))
print("ok")
"""


def test_the_spawners_import_and_validate_without_the_compute_packages():
    out = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT], capture_output=True,
                         text=True, timeout=120, cwd="/")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_hub_extra_pulls_no_compute_package_and_the_lab_extra_does():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [r.split(">")[0].split("=")[0].split("[")[0].strip()
             for r in project["dependencies"] + project["optional-dependencies"]["hub"]]
    assert not set(names) & {"mpi4py", "distributed", "dask", "cryptography"}, names
    assert "jupyterhub>=5.3" in project["optional-dependencies"]["hub"]
    lab = project["optional-dependencies"]["lab"]
    assert "dask-mpi-lx[compute]" in lab and "jupyter-server-proxy>=4.1.1" in lab
    compute = " ".join(project["optional-dependencies"]["compute"])
    assert all(name in compute for name in ("mpi4py", "distributed", "dask", "cryptography"))


def test_the_stack_requirements_list_every_runtime_dependency():
    """`make venv` installs requirements/stack.txt and then the project with --no-deps."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["hub"] + extras["compute"] + extras["lab"]
    stack = (ROOT / "requirements" / "stack.txt").read_text().lower()
    for requirement in wanted:
        name = requirement.split(">")[0].split("=")[0].split("[")[0].strip().lower()
        if name != "dask-mpi-lx":
            assert f"\n{name}" in stack, name
