"""The Python snippets in docs/sites.md compile; the complete configs among them load, set only
real traits, and render a batch script (ProfilesSpawner's and a site's own spawner class)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from dask_mpi_lx_hooks import DaskMPIPBSSpawner
from tests.conftest import ROOT
from tests.unit.test_hub_spawner import directives, make, submit

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sites.md").read_text(), re.S)


def run(block: str) -> Config:
    config = Config()
    exec(compile(block, "docs/sites.md", "exec"), {"get_config": lambda: config,
                                                    "__name__": "jupyterhub_config"})
    return config


def full_config(marker: str) -> str:
    (block,) = [b for b in BLOCKS if "get_config()" in b and marker in b]
    return block


def test_every_snippet_compiles():
    assert len(BLOCKS) >= 3
    for block in BLOCKS:
        compile(block, "docs/sites.md", "exec")


def test_profiles_spawner_snippet_renders_each_profile():
    config = run(full_config("ProfilesSpawner"))
    assert config.JupyterHub.spawner_class == "wrapspawner.ProfilesSpawner"
    profiles = config.ProfilesSpawner.profiles
    assert len(profiles) == 2
    for _display, key, class_name, child_config in profiles:
        cls = import_item(class_name)
        assert cls is DaskMPIPBSSpawner
        for name in child_config:
            assert name in cls.class_trait_names(), f"{name} is not a trait"
        spawner = make(cls, **child_config)
        spawner.user_options = {"profile": key}   # what ProfilesSpawner passes on
        script = submit(spawner)
        assert directives(script, "#PBS -q") == ["#PBS -q casper@casper-pbs"]
        assert directives(script, "#PBS -A") == ["#PBS -A NCAR0001"]
        dask = child_config.get("dask_default_enabled", True)
        assert ("mpirun --enable-recovery -np 8 " in script) is dask
        assert ("#PBS -l select=1:ncpus=1:mpiprocs=1:" in script) is not dask


def test_site_class_snippet_puts_the_dask_spawner_in_front():
    config = run(full_config("SiteDaskSpawner"))
    cls: Any = config.JupyterHub.spawner_class
    names = [c.__name__ for c in cls.__mro__]
    assert names.index("DaskMPIPBSSpawner") < names.index("SitePBSSpawner") < names.index(
        "PBSSpawner")
    spawner = make(cls, config=config)
    assert spawner.state_exechost_re.startswith("exec_host = ([\\w.-]+)")   # the site's
    spawner.user_options = {"cores": 6}
    script = submit(spawner)
    assert "#PBS -q casper@casper-pbs\n" in script
    assert "\nmpirun --enable-recovery -np 6 dask-mpi-lx launch " in script


@pytest.mark.parametrize("block", [b for b in BLOCKS if "get_config()" not in b])
def test_fragments_set_only_real_traits(block):
    for section, name in re.findall(r"^c\.(\w+)\.(\w+) =", block, re.M):
        assert section == "DaskMPIPBSSpawner" and name in DaskMPIPBSSpawner.class_trait_names()
