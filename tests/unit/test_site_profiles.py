"""The site profiles in etc/sites/ (NCAR Casper and Derecho) load, set only real traits, and
render the batch scripts their comments promise for every queue they offer; each queue's
limits are refused with a message naming the queue and the limit; bash accepts every script.

PBS cannot be installed here: the scripts are rendered by batchspawner's own submit path and
checked line by line, not run.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

import dask_mpi_lx_hooks
from dask_mpi_lx_hooks.options import format_size, format_walltime
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


# --- every profile, every queue: the lines NCAR's documentation asks for

#: The PBS server of each machine (NCAR/HPC-Docs docs/pbs/peer-scheduling.md)
SERVERS = {"casper": "casper-pbs", "derecho": "desched1"}
SITE_QUEUES = [(site, queue) for site in SERVERS
               for queue in load(site)[0].DaskMPIPBSSpawner.dask_partitions]


def shapes(spawner, queue: str) -> list[dict[str, Any]]:
    """A one-node and (where the queue allows several) a multi-node request, 2 threads each,
    within the queue's limits."""
    limits = spawner.dask_limits()
    per_node = limits.cores_per_node.get(queue, 64) // 2
    out = [{"cores": min(8, per_node), "threads": 2, "worker_memory": "1GiB", "partition": queue}]
    nodes = limits.nodes_of(queue)
    if nodes > 1:
        out.append({"cores": per_node * nodes, "nodes": nodes, "threads": 2,
                    "worker_memory": "1GiB", "partition": queue})
    return out


@pytest.mark.parametrize("site,queue", SITE_QUEUES)
def test_every_queue_renders_the_lines_ncar_asks_for(site, queue, tmp_path):
    spawner = spawner_for(site, dask_accounts_hook=lambda s: ["NCAR0001"])
    assert queue.endswith("@" + SERVERS[site])  # the peer-server form reaches either server
    for options in shapes(spawner, queue):
        spawner = spawner_for(site, dask_accounts_hook=lambda s: ["NCAR0001"])
        spawner.user_options = options
        script = submit(spawner)
        opts, lines = spawner.dask_options, pbs(script)
        whole = spawner.dask_pbs_whole_node_ncpus.get(queue)
        ncpus = whole or opts.ranks_per_node * opts.threads
        select = [x for x in lines if x.startswith("-l select=")]
        assert select == [f"-l select={opts.nodes}:ncpus={ncpus}:mpiprocs={opts.ranks_per_node}:"
                          f"ompthreads={opts.threads}:mem={spawner.req_memory}"]
        assert "-r n" in lines and f"-q {queue}" in lines
        priorities = spawner.dask_pbs_job_priorities
        assert [x for x in lines if "job_priority" in x] == (
            [f"-l job_priority={priorities[0]}"] if priorities else [])
        launch = script[script.index("\n", script.index("set -eu\n", script.index("module load")))
                        + 1:].splitlines()[0]
        if spawner.dask_launcher == "pals":   # Derecho: -ppn on one node too, depth binding
            assert launch.startswith(f"mpiexec -n {opts.ranks} -ppn {opts.ranks_per_node} "
                                     f"--cpu-bind depth -d {opts.threads} ")
        else:                                  # Casper: Open MPI takes its slots from PBS
            assert spawner.dask_launcher == "mpirun"
            assert launch.startswith(f"mpirun --enable-recovery -np {opts.ranks} ")
            assert not re.search(r"(^|\s)-ppn(\s|$)", script)
        assert_bash_accepts(script, tmp_path)


@pytest.mark.parametrize("site,queue", SITE_QUEUES)
def test_every_queue_refuses_requests_above_its_own_limits(site, queue):
    spawner = spawner_for(site)
    limits = spawner.dask_limits()
    named = f"queue {queue!r}"

    def refused(options: dict[str, Any]) -> str:
        with pytest.raises(web.HTTPError) as e:
            spawner.apply_dask_options({"partition": queue, **options})
        assert e.value.status_code == 400
        return e.value.log_message

    longest = limits.walltime_of(queue)
    message = refused({"cores": 4, "walltime": format_walltime(longest + 60)})
    assert named in message and format_walltime(longest) in message
    spawner.apply_dask_options({"partition": queue, "cores": 4,
                                "walltime": format_walltime(longest)})

    most = limits.nodes_of(queue)
    message = refused({"cores": 2 * (most + 1), "nodes": most + 1})
    assert named in message and f"to {most}," in message

    cores = limits.cores_per_node[queue]
    message = refused({"cores": cores + 1})
    assert named in message and f"at most {cores} cores per node" in message

    memory, worker = limits.memory_per_node[queue], limits.max_worker_memory
    ranks = 3 + (memory - limits.notebook_memory) // worker   # the fewest that overflow a node
    assert ranks <= cores, "the profile's largest workers cannot overflow a node"
    message = refused({"cores": ranks, "worker_memory": format_size(worker)})
    assert named in message and f"at most {format_size(memory)} per node" in message
    fits = (memory - limits.notebook_memory) // (ranks - 2) // 2**20
    spawner.apply_dask_options({"partition": queue, "cores": ranks, "worker_memory": f"{fits}MiB"})
    assert spawner.dask_options.memory_per_node(limits.notebook_memory) <= memory


@pytest.mark.parametrize("site", ["casper", "derecho"])
def test_the_form_shows_each_queues_limits(site):
    spawner = spawner_for(site)
    limits = spawner.dask_limits()
    form = spawner.options_form(spawner)
    for queue in limits.partitions:
        shown = re.search(rf'<option value="{re.escape(queue)}"[^>]*>([^<]*)</option>', form)
        assert shown, queue
        assert format_walltime(limits.walltime_of(queue)) in shown.group(1)
        assert f"{limits.cores_per_node[queue]} cores" in shown.group(1)
        assert format_size(limits.memory_per_node[queue]) in shown.group(1)


def test_derecho_job_priority_is_a_bounded_choice():
    spawner = spawner_for("derecho")
    form = spawner.options_form(spawner)
    for value in spawner.dask_pbs_job_priorities:
        assert f'<option value="{value}"' in form
    spawner.user_options = {"cores": 8, "job_priority": "economy"}
    assert "-l job_priority=economy" in pbs(submit(spawner))
    with pytest.raises(web.HTTPError) as e:
        spawner.apply_dask_options({"cores": 8, "job_priority": "express"})
    assert e.value.log_message == ("Job priority: got 'express'; choose one of "
                                   + ", ".join(spawner.dask_pbs_job_priorities))


def test_a_job_priority_that_is_not_a_word_fails_when_the_spawner_is_made():
    with pytest.raises(TraitError, match=r"dask_pbs_job_priorities: got 'regular\\n#PBS -l '; "
                                         "expected a word"):
        spawner_for("derecho", dask_pbs_job_priorities=["regular\n#PBS -l x"])


def test_casper_offers_no_job_priority():
    spawner = spawner_for("casper")
    assert 'name="job_priority"' not in spawner.options_form(spawner)
    with pytest.raises(web.HTTPError, match="this hub offers no priority choice"):
        spawner.apply_dask_options({"cores": 8, "job_priority": "premium"})


# --- Casper: shared nodes, Open MPI's mpirun, modules, the peer-server queue

def test_casper_one_node(tmp_path):
    script = script_for("casper", {"cores": 8, "threads": 2, "worker_memory": "4GiB"})
    lines = pbs(script)
    assert "-l select=1:ncpus=16:mpiprocs=8:ompthreads=2:mem=28GB" in lines   # 4GiB + 6 x 4GiB
    assert "-q casper@casper-pbs" in lines
    assert not [x for x in lines if x.startswith("-A")]          # the hook lists no project
    body = script.split("\nset -eu\n", 1)[1]
    assert body.index("module load ncarenv/24.12 intel/2024.2.1 openmpi/5.0.6") < body.index(
        "\nmpirun --enable-recovery -np 8 ") < body.index("/bin/dask-mpi-lx launch ")
    assert_bash_accepts(script, tmp_path)


def test_casper_two_nodes_mpirun_takes_its_slots_from_pbs(tmp_path):
    script = script_for("casper", {"cores": 16, "nodes": 2, "worker_memory": "2GiB"})
    assert "-l select=2:ncpus=8:mpiprocs=8:ompthreads=1:mem=16GB" in pbs(script)  # 8 x 2GiB
    assert "\nmpirun --enable-recovery -np 16 " in script and "-ppn" not in script
    assert_bash_accepts(script, tmp_path)


def test_casper_refuses_more_ranks_per_node_than_its_cores():
    spawner = spawner_for("casper")
    with pytest.raises(web.HTTPError,
                       match="queue 'casper@casper-pbs' allows at most 62 cores per node"):
        spawner.apply_dask_options({"cores": 32, "threads": 2})


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
    assert "-l select=2:ncpus=128:mpiprocs=128:ompthreads=1:mem=134GB" in lines  # 8 + 126 x 1
    assert "-q main@desched1" in lines and "-A NCAR0001" in lines
    assert "-l job_priority=regular" in lines
    body = script.split("\nset -eu\n", 1)[1]
    assert "cray-pals" not in body
    assert body.index("module load ncarenv/24.12 intel/2024.2.1 craype/2.7.31 cray-mpich/8.1.29"
                      ) < body.index("\nmpiexec -n 256 -ppn 128 /glade/")
    assert_bash_accepts(script, tmp_path)


def test_derecho_one_node_asks_the_whole_node_and_says_ppn():
    script = script_for("derecho", {"cores": 64, "account": "UCSU0012"})
    lines = pbs(script)
    assert "-l select=1:ncpus=128:mpiprocs=64:ompthreads=1:mem=101GB" in lines  # 8 + 62 x 1.5
    assert "-A UCSU0012" in lines
    assert "\nmpiexec -n 64 -ppn 64 /glade/" in script and "--cpu-bind" not in script


def test_derecho_develop_is_shared_and_binds_threads():
    script = script_for("derecho", {"cores": 8, "threads": 2, "partition": "develop@desched1"})
    assert "-l select=1:ncpus=16:mpiprocs=8:ompthreads=2:mem=17GB" in pbs(script)  # 8 + 6 x 1.5
    assert "-q develop@desched1" in pbs(script)
    assert "\nmpiexec -n 8 -ppn 8 --cpu-bind depth -d 2 /glade/" in script


def test_derecho_develop_is_capped_at_six_hours():
    spawner = spawner_for("derecho")
    with pytest.raises(web.HTTPError) as e:
        spawner.apply_dask_options({"cores": 8, "partition": "develop@desched1",
                                    "walltime": "12:00:00"})
    assert e.value.log_message == ("Walltime: got '12:00:00'; expected 00:01:00 to 06:00:00, "
                                   "the most queue 'develop@desched1' allows")
    spawner.apply_dask_options({"cores": 8, "partition": "main@desched1", "walltime": "12:00:00"})


def test_derecho_refuses_a_project_not_in_the_list():
    spawner = spawner_for("derecho")
    with pytest.raises(web.HTTPError) as e:
        spawner.apply_dask_options({"cores": 8, "account": "ABCD0000-and-some-more-text"})
    assert e.value.status_code == 400
    assert e.value.log_message == ("Project / account: got 'ABCD0000-and-som'...; choose one "
                                   "of NCAR0001, UCSU0012")
