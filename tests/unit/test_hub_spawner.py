"""The spawners as the hub drives them: options applied to the request, rendered scripts.

PBS cannot be installed here: its script is rendered and checked line by line only.
"""

import getpass
from types import SimpleNamespace

import pytest
from batchspawner import format_template
from tornado import web

from dask_mpi_lx_hooks.spawner import DaskMPIPBSSpawner, DaskMPISlurmSpawner


def make(cls, **config):
    user = SimpleNamespace(name=getpass.getuser(), url="/user/x/", escaped_name="x",
                           server=None, spawners={}, settings={})
    spawner = cls(user=user, hub=SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api",
                                                 base_url="/hub/"), req_keepvars="PATH",
                **config)
    spawner.cmd = ["jupyterhub-singleuser"]
    spawner.get_args = lambda: []
    return spawner


def render(spawner) -> str:
    subvars = spawner.get_req_subvars()
    subvars["cmd"] = spawner.cmd_formatted_for_batch()
    subvars.update(spawner.user_options)
    return format_template(spawner.batch_script, **subvars)


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
    assert "#PBS -l select=1:ncpus=12:mpiprocs=6:mem=18GB\n" in script
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
