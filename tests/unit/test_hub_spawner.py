"""The spawners as the hub drives them: options applied to the request, rendered scripts.

PBS cannot be installed here: its script is rendered and checked line by line only.
"""

import asyncio
import getpass
from types import SimpleNamespace

import pytest
from batchspawner import format_template
from tornado import web

from dask_mpi_lx_hooks.spawner import DaskMPIPBSSpawner, DaskMPISlurmSpawner


def make(cls, **config):
    user = SimpleNamespace(name=getpass.getuser(), url="/user/x/", escaped_name="x",
                           server=None, spawners={}, settings={})
    hub = SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/",
                          public_host="")
    settings = {"req_keepvars": "PATH", **config}  # req_keepvars=None: batchspawner's default
    spawner = cls(user=user, hub=hub, **{k: v for k, v in settings.items() if v is not None})
    spawner.cmd = ["jupyterhub-singleuser"]
    spawner.get_args = lambda: []
    return spawner


def render(spawner) -> str:
    subvars = spawner.get_req_subvars()
    subvars["cmd"] = spawner.cmd_formatted_for_batch()
    subvars.update(spawner.user_options)
    return format_template(spawner.batch_script, **subvars)


def submit(spawner, sent: dict | None = None) -> str:
    """batchspawner's own submit_batch_script; returns the script it pipes to sbatch/qsub
    (also left in ``sent``, which stays empty when nothing is submitted)."""
    sent = {} if sent is None else sent

    async def run_command(cmd, input=None, env=None):
        sent["script"] = input
        return "4242"

    spawner.run_command = run_command
    asyncio.run(spawner.submit_batch_script())
    return sent["script"]


def directives(script: str, prefix: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith(prefix)]


def test_slurm_script_requests_the_ranks_and_wraps_the_command():
    s = make(DaskMPISlurmSpawner, dask_partitions=["debug"])
    s.apply_dask_options({"cores": 5, "threads": 2, "worker_memory": "1GiB",
                          "walltime": "00:30:00"})
    script = render(s)
    assert "#SBATCH --ntasks=5\n" in script
    assert "#SBATCH --cpus-per-task=2\n" in script
    assert "#SBATCH --time=00:30:00\n" in script
    assert "#SBATCH --partition=debug\n" in script
    assert "#SBATCH --mem=5120M\n" in script  # 3 workers x 1GiB + 2GiB for Jupyter/scheduler
    assert ("\nmpirun --enable-recovery -np 5 dask-mpi-lx launch --nthreads 2 --memory-limit 1073741824 "
            "--no-wait-for-workers -- "
            "batchspawner-singleuser jupyterhub-singleuser\n") in script


def test_slurm_with_srun():
    s = make(DaskMPISlurmSpawner, dask_launcher="srun")
    s.apply_dask_options({"cores": 3})
    assert "\nsrun --mpi=pmix -n 3 dask-mpi-lx launch" in render(s)


def test_switch_off_gives_plain_batchspawner():
    s = make(DaskMPISlurmSpawner)
    s.apply_dask_options({"dask": False, "cores": 1})
    script = render(s)
    assert "dask-mpi-lx" not in script.split("#SBATCH")[-1].split("\n", 1)[1].replace(
        "# Rendered by dask_mpi_lx_hooks", "")
    assert "\nbatchspawner-singleuser jupyterhub-singleuser\n" in script
    assert "#SBATCH --ntasks=1\n" in script


def test_pbs_script_ncar_style():
    s = make(DaskMPIPBSSpawner, dask_partitions=["casper", "main"], dask_launcher="mpiexec")
    s.apply_dask_options({"cores": 6, "threads": 2, "worker_memory": "4GiB",
                          "partition": "main", "walltime": "04:00:00"})
    script = render(s)
    assert "#PBS -l select=1:ncpus=12:mpiprocs=6:ompthreads=2:mem=18GB\n" in script
    assert "#PBS -l walltime=04:00:00\n" in script
    assert "#PBS -q main\n" in script
    assert ("\nmpiexec -n 6 dask-mpi-lx launch --nthreads 2 --memory-limit 4294967296 "
            "--no-wait-for-workers -- ") in script


def test_bad_rest_options_become_http_400_and_change_nothing():
    s = make(DaskMPISlurmSpawner)
    before = (s.req_ntasks, s.req_memory, s.user_options)
    with pytest.raises(web.HTTPError) as e:
        s.apply_dask_options({"cores": "6; touch /tmp/pwned"})
    assert e.value.status_code == 400 and "Cores (MPI ranks)" in e.value.log_message
    assert (s.req_ntasks, s.req_memory, s.user_options) == before


def test_form_errors_become_http_400_with_the_message():
    s = make(DaskMPISlurmSpawner)
    with pytest.raises(web.HTTPError) as e:
        s.options_from_form({"cores": ["-3"], "dask": ["on"]})
    assert e.value.status_code == 400
    assert "expected a whole number from 3 to 8" in e.value.log_message


def test_options_form_is_rendered_from_the_limits():
    s = make(DaskMPISlurmSpawner, dask_max_cores=36, dask_partitions=["casper"])
    html = s.options_form(s)
    assert 'max="36"' in html and 'value="casper"' in html


def test_after_an_error_the_form_shows_what_was_typed_escaped():
    s = make(DaskMPISlurmSpawner, dask_partitions=["debug", "big"])
    with pytest.raises(web.HTTPError):
        s.options_from_form({"cores": ["7"], "walltime": ['"><script>x</script>'],
                             "partition": ["big"], "dask": ["on"]})
    html = s.options_form(s)
    assert 'value="7"' in html and '<option value="big" selected>' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    s.options_from_form({"cores": ["4"], "dask": ["on"]})
    assert 'value="6"' in s.options_form(s)  # a good submission clears it


# --- several nodes: the exact resource lines, rendered by batchspawner's submit path

@pytest.mark.parametrize("options,lines", [
    ({"cores": 5, "threads": 2, "worker_memory": "1GiB"},
     ["--nodes=1", "--ntasks=5", "--ntasks-per-node=5", "--cpus-per-task=2", "--mem=5120M"]),
    ({"cores": 6, "nodes": 2, "worker_memory": "1GiB"},   # node 1: 2GiB + 1 worker; node 2: 3
     ["--nodes=2", "--ntasks=6", "--ntasks-per-node=3", "--cpus-per-task=1", "--mem=3072M"]),
    ({"cores": 12, "nodes": 3, "threads": 2, "worker_memory": "4GiB"},  # 4 workers: 16GiB
     ["--nodes=3", "--ntasks=12", "--ntasks-per-node=4", "--cpus-per-task=2", "--mem=16384M"]),
])
def test_slurm_resource_lines_for_one_to_three_nodes(options, lines):
    s = make(DaskMPISlurmSpawner, dask_max_nodes=3, dask_max_cores=36)
    s.user_options = options
    script = submit(s)
    requested = [d.split(" ", 1)[1] for d in directives(script, "#SBATCH")]
    assert [r for r in requested if r.split("=")[0] in {x.split("=")[0] for x in lines}] == lines


def test_slurm_two_nodes_with_srun_puts_the_ranks_per_node():
    s = make(DaskMPISlurmSpawner, dask_max_nodes=2, dask_launcher="srun")
    s.user_options = {"cores": 6, "nodes": 2}
    assert "\nsrun --mpi=pmix -n 6 --ntasks-per-node 3 dask-mpi-lx launch " in submit(s)


PBS = {"dask_partitions": ["casper", "main"], "dask_launcher": "mpiexec", "dask_max_nodes": 3,
       "dask_max_cores": 384, "dask_max_worker_memory": "16GiB",
       "dask_pbs_whole_node_ncpus": {"main": 128}, "dask_cores_per_node": {"casper": 36}}


@pytest.mark.parametrize("options,select,launch", [
    ({"cores": 6, "threads": 2, "worker_memory": "4GiB"},   # Casper, shared: ncpus = 6 x 2
     "select=1:ncpus=12:mpiprocs=6:ompthreads=2:mem=18GB", "mpiexec -n 6 dask-mpi-lx"),
    ({"cores": 8, "nodes": 2, "worker_memory": "4GiB"},     # node 1: 2 + 2x4; node 2: 4x4
     "select=2:ncpus=4:mpiprocs=4:ompthreads=1:mem=16GB", "mpiexec -n 8 -ppn 4 dask-mpi-lx"),
    ({"cores": 12, "nodes": 3, "threads": 2, "worker_memory": "10GiB", "partition": "main"},
     "select=3:ncpus=128:mpiprocs=4:ompthreads=2:mem=40GB", "mpiexec -n 12 -ppn 4 dask-mpi-lx"),
    ({"cores": 256, "nodes": 2, "worker_memory": "1GiB", "partition": "main"},  # Derecho, full
     "select=2:ncpus=128:mpiprocs=128:ompthreads=1:mem=128GB", "mpiexec -n 256 -ppn 128 dask-mpi-lx"),
])
def test_pbs_select_for_shared_and_whole_node_queues(options, select, launch):
    s = make(DaskMPIPBSSpawner, **PBS)
    s.user_options = options
    script = submit(s)
    assert f"#PBS -l {select}" in directives(script, "#PBS -l select")
    assert f"\n{launch} launch " in script


def test_pbs_whole_node_cores_bound_the_ranks_per_node():
    s = make(DaskMPIPBSSpawner, **PBS)
    with pytest.raises(web.HTTPError, match="queue 'main' allows at most 128 cores per node"):
        s.apply_dask_options({"cores": 130, "partition": "main"})
    with pytest.raises(web.HTTPError, match="queue 'casper' allows at most 36 cores per node"):
        s.apply_dask_options({"cores": 20, "threads": 2})


# --- only validated values are ever rendered (JupyterHub < 5.3 skips apply_user_options)

def test_options_never_applied_are_validated_where_the_script_is_rendered():
    s = make(DaskMPISlurmSpawner, dask_max_nodes=2)
    s.user_options = {"cores": "6", "nodes": "2", "worker_memory": "1GiB"}  # raw, as REST sends
    assert s.dask_options is None
    script = submit(s)
    assert "#SBATCH --ntasks=6\n" in script and "#SBATCH --nodes=2\n" in script
    assert "\nmpirun --enable-recovery -np 6 dask-mpi-lx launch " in script
    assert s.user_options["worker_memory"] == 2**30  # what the hub keeps is the parsed value


@pytest.mark.parametrize("raw", [
    {"cores": "6; touch /tmp/pwned"},
    {"cmd": "id > /tmp/pwned"},              # would replace the command in the template
    {"ntasks": "1\n#SBATCH --uid=0"},        # would replace a template variable
    {"worker_memory": "9" * 400},
])
def test_raw_bad_options_are_refused_at_render_and_nothing_is_submitted(raw):
    s = make(DaskMPISlurmSpawner)
    s.user_options = raw
    sent = {}
    with pytest.raises(web.HTTPError) as e:
        submit(s, sent)
    assert e.value.status_code == 400 and sent == {}


def test_options_validated_once_stay_the_same_when_validated_again():
    s = make(DaskMPISlurmSpawner, dask_max_nodes=2)
    s.apply_dask_options({"cores": 6, "nodes": 2, "walltime": "02:00:00", "dask": "on"})
    first = dict(s.user_options)
    submit(s)
    assert s.user_options == first


# --- PBS: the hub token is not in any #PBS line (qstat -f shows the Variable_List)

def test_pbs_token_is_exported_in_the_body_not_passed_with_dash_v():
    s = make(DaskMPIPBSSpawner, req_keepvars=None, **PBS)
    s.api_token = "sEcReT-token-0123"
    s.user_options = {"cores": 6}
    script = submit(s)
    assert not [d for d in directives(script, "#PBS") if "sEcReT" in d or "TOKEN" in d]
    keepvars = directives(script, "#PBS -v ")[0]
    assert "JUPYTERHUB_API_URL" in keepvars and "JUPYTERHUB_USER" in keepvars
    assert "\nexport JUPYTERHUB_API_TOKEN=sEcReT-token-0123\n" in script
    body = script.split("\nset -eu\n", 1)[1]
    assert body.index("export JUPYTERHUB_API_TOKEN") < body.index("dask-mpi-lx launch")


def test_pbs_secret_values_are_quoted_for_the_shell():
    s = make(DaskMPIPBSSpawner, req_keepvars=None, environment={"SITE_PASSWORD": "a'b $(id)"},
             **PBS)
    s.user_options = {"cores": 6}
    script = submit(s)
    assert "export SITE_PASSWORD='a'\"'\"'b $(id)'\n" in script
    assert "SITE_PASSWORD" not in directives(script, "#PBS -v ")[0]


def test_a_custom_pbs_template_without_private_env_still_gets_the_token():
    s = make(DaskMPIPBSSpawner, req_keepvars=None, **PBS,
             batch_script="#!/bin/sh\n#PBS -v {{keepvars}}\n{{cmd}}\n")
    s.api_token = "tok"
    s.user_options = {"cores": 6}
    assert "JUPYTERHUB_API_TOKEN" in directives(submit(s), "#PBS -v ")[0]


# --- spawn progress

def first_messages(spawner, n=2) -> list[str]:
    async def take():
        gen = spawner.progress()
        return [(await gen.__anext__())["message"] for _ in range(n)]

    return asyncio.run(take())


def test_progress_names_the_nodes_when_more_than_one():
    s = make(DaskMPISlurmSpawner, dask_max_nodes=2, dask_max_cores=12)
    s.apply_dask_options({"cores": 12, "nodes": 2})
    s.job_id = "77"
    assert first_messages(s)[1] == ("Submitted batch job 77 (12 cores on 2 nodes: Jupyter, "
                                    "a Dask scheduler and 10 workers)")
    s.apply_dask_options({"cores": 6})
    assert "(6 cores: Jupyter, a Dask scheduler and 4 workers)" in first_messages(s)[1]


def test_options_changed_after_they_were_applied_are_validated_again():
    """JupyterHub < 5.3 replaces user_options on the next spawn without calling apply."""
    s = make(DaskMPISlurmSpawner)
    s.apply_dask_options({"cores": 6})
    s.user_options = {"cores": "4; id"}
    sent = {}
    with pytest.raises(web.HTTPError):
        submit(s, sent)
    assert sent == {}
    s.user_options = {"cores": 4}
    assert "#SBATCH --ntasks=4\n" in submit(s)


def test_a_site_hook_run_after_ours_is_kept():
    s = make(DaskMPISlurmSpawner)
    s.apply_dask_options({"cores": 6})
    s.req_memory = "64000M"  # what a site's own apply_user_options might set after ours
    assert "#SBATCH --mem=64000M\n" in submit(s)
