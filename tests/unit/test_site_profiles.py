"""The site profiles in etc/sites/ (NCAR Casper and Derecho) load, set only real traits, and
render the batch scripts their comments promise; bash accepts every script.

PBS cannot be installed here: the scripts are rendered by batchspawner's own submit path and
checked line by line, not run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from tornado import web
from traitlets.config import Config

import dask_mpi_lx_hooks
from tests.unit.test_hub_spawner import directives, make, submit

SITES = Path(__file__).resolve().parents[2] / "etc" / "sites"


def load(site: str) -> tuple[Config, dict[str, Any]]:
    """The profile's config, and the namespace it ran in (for its hook functions)."""
    config = Config()
    path = SITES / site / "jupyterhub_config.py"
    namespace: dict[str, Any] = {"get_config": lambda: config, "__name__": "jupyterhub_config"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return config, namespace


def spawner_for(site: str, token: str = "tok-SECRET-42", **overrides: Any):
    config, _ = load(site)
    for key, value in overrides.items():
        config.DaskMPIPBSSpawner[key] = value
    cls = getattr(dask_mpi_lx_hooks, config.JupyterHub.spawner_class.rsplit(".", 1)[1])
    spawner = make(cls, config=config, req_keepvars=None)
    spawner.api_token = token
    return spawner


def script_for(site: str, options: dict[str, Any], **overrides: Any) -> str:
    spawner = spawner_for(site, **overrides)
    spawner.user_options = options
    return submit(spawner)


def assert_bash_accepts(script: str, tmp_path: Path) -> None:
    path = tmp_path / "job.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def pbs(script: str) -> list[str]:
    return [d.split(" ", 1)[1] for d in directives(script, "#PBS ")]


@pytest.mark.parametrize("site", ["casper", "derecho"])
def test_profile_sets_only_real_traits(site):
    config, _ = load(site)
    cls = getattr(dask_mpi_lx_hooks, config.JupyterHub.spawner_class.rsplit(".", 1)[1])
    assert cls is dask_mpi_lx_hooks.DaskMPIPBSSpawner
    for key in config[cls.__name__]:
        assert key in cls.class_trait_names(), f"{cls.__name__}.{key} is not a trait"
    spawner = spawner_for(site)
    assert spawner.dask_limits().max_cores == config[cls.__name__]["dask_max_cores"]
    form = spawner.options_form(spawner)
    assert 'name="partition"' in form and 'name="nodes"' in form


@pytest.mark.parametrize("site", ["casper", "derecho"])
def test_profile_script_keeps_the_token_out_of_pbs_lines_and_logs_per_job(site, tmp_path):
    script = script_for(site, {"cores": 8}, dask_accounts_hook=lambda s: ["NCAR0001"])
    assert not [d for d in directives(script, "#PBS") if "SECRET" in d or "API_TOKEN" in d]
    assert "\nexport JUPYTERHUB_API_TOKEN=tok-SECRET-42\n" in script
    lines = pbs(script)
    assert "-k eod" in lines and "-j oe" in lines
    assert [x for x in lines if x.startswith("-o ")] == [f"-o {Path.home()}/"]
    assert "-A NCAR0001" in lines
    assert_bash_accepts(script, tmp_path)


# --- Casper: shared nodes, Open MPI's mpirun, modules, the peer-server queue

def test_casper_one_node(tmp_path):
    script = script_for("casper", {"cores": 8, "threads": 2, "worker_memory": "4GiB"})
    lines = pbs(script)
    assert "-l select=1:ncpus=16:mpiprocs=8:mem=28GB" in lines   # 4GiB + 6 x 4GiB
    assert "-q casper@casper-pbs" in lines
    assert not [x for x in lines if x.startswith("-A")]          # the hook lists no project
    body = script.split("\nset -eu\n", 1)[1]
    assert body.index("module load ncarenv gcc openmpi") < body.index(
        "\nmpirun --enable-recovery -np 8 ") < body.index("/bin/dask-mpi-lx launch ")
    assert_bash_accepts(script, tmp_path)


def test_casper_two_nodes_mpirun_takes_its_slots_from_pbs(tmp_path):
    script = script_for("casper", {"cores": 16, "nodes": 2, "worker_memory": "2GiB"})
    assert "-l select=2:ncpus=8:mpiprocs=8:mem=16GB" in pbs(script)  # 8 x 2GiB on node 2
    assert "\nmpirun --enable-recovery -np 16 " in script and "-ppn" not in script
    assert_bash_accepts(script, tmp_path)


def test_casper_refuses_more_ranks_per_node_than_its_cores():
    spawner = spawner_for("casper")
    with pytest.raises(web.HTTPError, match="'casper@casper-pbs' nodes have 36"):
        spawner.apply_dask_options({"cores": 20, "threads": 2})


def test_casper_projects_hook_reads_the_users_file(tmp_path):
    config, namespace = load("casper")
    namespace["PROJECTS"] = tmp_path
    spawner = spawner_for("casper", dask_accounts_hook=namespace["projects_of"])
    assert spawner.dask_account_choices() == ()
    (tmp_path / spawner.user.name).write_text("UCSU0012\nNCAR0001\n")
    assert spawner.dask_account_choices() == ("UCSU0012", "NCAR0001")
    spawner.user_options = {"cores": 4, "account": "NCAR0001"}
    assert "-A NCAR0001" in pbs(submit(spawner))


# --- Derecho: whole 128-core nodes in main, shared develop, PALS' mpiexec, Cray modules

def test_derecho_two_whole_nodes(tmp_path):
    script = script_for("derecho", {"cores": 256, "nodes": 2, "worker_memory": "1GiB"})
    lines = pbs(script)
    assert "-l select=2:ncpus=128:mpiprocs=128:mem=134GB" in lines  # 8GiB + 126 x 1GiB
    assert "-q main" in lines and "-A NCAR0001" in lines
    body = script.split("\nset -eu\n", 1)[1]
    assert body.index("module load ncarenv craype cray-mpich cray-pals") < body.index(
        "\nmpiexec -n 256 -ppn 128 /glade/")
    assert_bash_accepts(script, tmp_path)


def test_derecho_one_node_asks_the_whole_node():
    script = script_for("derecho", {"cores": 64, "account": "UCSU0012"})
    lines = pbs(script)
    assert "-l select=1:ncpus=128:mpiprocs=64:mem=101GB" in lines  # 8GiB + 62 x 1.5GiB
    assert "-A UCSU0012" in lines
    assert "\nmpiexec -n 64 /glade/" in script and "-ppn" not in script


def test_derecho_develop_is_shared():
    script = script_for("derecho", {"cores": 8, "threads": 2, "partition": "develop"})
    assert "-l select=1:ncpus=16:mpiprocs=8:mem=17GB" in pbs(script)  # 8GiB + 6 x 1.5GiB
    assert "-q develop" in pbs(script)


def test_derecho_refuses_a_project_not_in_the_list():
    spawner = spawner_for("derecho")
    with pytest.raises(web.HTTPError) as e:
        spawner.apply_dask_options({"cores": 8, "account": "ABCD0000-and-some-more-text"})
    assert e.value.status_code == 400
    assert e.value.log_message == ("Project / account: got 'ABCD0000-and-som'...; choose one "
                                   "of NCAR0001, UCSU0012")


def test_derecho_peer_server_queue_names_work_too():
    script = script_for("derecho", {"cores": 256, "nodes": 2, "worker_memory": "1GiB",
                                     "partition": "main@desched1"},
                        dask_partitions=["main@desched1"],
                        dask_pbs_whole_node_ncpus={"main@desched1": 128})
    assert "-q main@desched1" in pbs(script)
    assert "-l select=2:ncpus=128:mpiprocs=128:mem=134GB" in pbs(script)
