"""The example hub configs in etc/ load, and every setting they make is a real trait."""

from pathlib import Path

import pytest
from traitlets.config import Config

import dask_mpi_lx_hooks

ETC = Path(__file__).resolve().parents[2] / "etc"


@pytest.mark.parametrize("name", ["jupyterhub_config_slurm.py", "jupyterhub_config_pbs.py"])
def test_example_config_sets_only_real_traits(name):
    config = Config()
    exec(compile((ETC / name).read_text(), name, "exec"), {"get_config": lambda: config})
    spawner_class = config.JupyterHub.spawner_class
    cls = getattr(dask_mpi_lx_hooks, spawner_class.rsplit(".", 1)[1])
    section = config[cls.__name__]
    assert section, "the example configures the spawner"
    for key in section:
        assert key in cls.class_trait_names(), f"{cls.__name__}.{key} is not a trait"
    assert cls(config=config).dask_limits().max_cores == section["dask_max_cores"]


def test_batch_templates_in_etc_are_the_packaged_ones():
    from dask_mpi_lx_hooks.spawner import template

    for name in ("slurm.sh.j2", "pbs.sh.j2"):
        assert (ETC / "batch" / name).read_text() == template(name)


@pytest.mark.parametrize("name,lines", [
    ("jupyterhub_config_slurm.py", ["#SBATCH --nodes=2", "#SBATCH --ntasks=72",
                                    "#SBATCH --ntasks-per-node=36"]),
    ("jupyterhub_config_pbs.py", ["#PBS -l select=2:ncpus=128:mpiprocs=128:ompthreads=1:mem=128GB",
                                  "#PBS -q main@desched1", "#PBS -l job_priority=regular"]),
])
def test_example_config_renders_a_two_node_job(name, lines):
    from tests.unit.test_hub_spawner import make, submit

    config = Config()
    exec(compile((ETC / name).read_text(), name, "exec"), {"get_config": lambda: config})
    cls = getattr(dask_mpi_lx_hooks, config.JupyterHub.spawner_class.rsplit(".", 1)[1])
    spawner = make(cls, config=config)
    spawner.user_options = ({"cores": 72, "nodes": 2} if "slurm" in name
                            else {"cores": 256, "nodes": 2, "partition": "main@desched1",
                                  "worker_memory": "1GiB"})
    script = submit(spawner)
    for line in lines:
        assert f"\n{line}\n" in script
