import os

from dask_mpi_lx.mpi import environ


def test_scrub_mpi_removes_open_mpi_pmix_and_hydra():
    env = {"OMPI_COMM_WORLD_RANK": "1", "PMIX_RANK": "1", "PMI_FD": "9", "HYDI_CONTROL_FD": "3",
           "MPI_LOCALRANKID": "0", "PATH": "/bin", "SLURM_JOB_ID": "7"}
    assert environ.scrub_mpi(env) == {"PATH": "/bin", "SLURM_JOB_ID": "7"}


def test_hub_secrets():
    env = {"JUPYTERHUB_API_TOKEN": "t", "JPY_API_TOKEN": "t", "JUPYTERHUB_OAUTH_CALLBACK_URL": "u",
           "JUPYTERHUB_SERVICE_PREFIX": "/user/a/", "HOME": "/h"}
    assert environ.has_hub_secrets(env)
    assert environ.scrub_hub_secrets(env) == {"JUPYTERHUB_SERVICE_PREFIX": "/user/a/", "HOME": "/h"}


def test_rank_from_each_launcher():
    assert environ.rank_from_env({"OMPI_COMM_WORLD_RANK": "3"}) == 3
    assert environ.rank_from_env({"PMI_RANK": "2"}) == 2
    assert environ.rank_from_env({"SLURM_PROCID": "1"}) == 1
    assert environ.rank_from_env({}) is None


def test_job_id():
    assert environ.job_id({"SLURM_JOB_ID": "42"}) == "42"
    assert environ.job_id({"PBS_JOBID": "1234.casper-pbs"}) == "1234"
    assert environ.job_id({}) == f"local-{os.getpid()}"


def test_scrub_process_environ_reaches_child_processes():
    import subprocess
    import sys

    os.putenv("OMPI_TEST_ONLY_IN_C", "1")  # set behind os.environ's back, as PMIx does
    os.environ["PMIX_TEST_BOTH"] = "1"
    removed = environ.scrub_process_environ(("OMPI_TEST_", "PMIX_TEST_"))
    assert removed == ["OMPI_TEST_ONLY_IN_C", "PMIX_TEST_BOTH"]
    child = subprocess.run([sys.executable, "-c", "import os; print(sorted(k for k in os.environ "
                            "if 'TEST_' in k and k.startswith(('OMPI','PMIX'))))"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "[]"


def test_mpi_world_size_only_counts_launcher_ranks():
    assert environ.mpi_world_size({"SLURM_NTASKS": "5", "SLURM_JOB_ID": "1"}) is None
    assert environ.mpi_world_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert environ.mpi_world_size({"PMI_SIZE": "3", "PMI_RANK": "0"}) == 3
    assert environ.mpi_world_size({"PMIX_RANK": "0", "SLURM_STEP_NUM_TASKS": "6"}) == 6


def test_child_scrub_drops_slurm_task_vars_keeps_job_vars():
    env = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "5", "SLURM_PROCID": "0",
           "SLURM_STEP_ID": "0", "SLURM_LOCALID": "0"}
    assert environ.scrub_mpi(env) == {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "5"}


def test_cray_pals_and_slurm_pmix_plugin_variables_are_scrubbed():
    env = {"PALS_RANKID": "1", "PALS_APID": "x", "SLURM_PMIXP_ABORT_AGENT_PORT": "3",
           "SLURM_JOB_ID": "7", "PATH": "/bin"}
    assert environ.scrub_mpi(env) == {"SLURM_JOB_ID": "7", "PATH": "/bin"}
    assert environ.rank_from_env({"PALS_RANKID": "2"}) == 2


def test_dropped_hub_token_is_gone_from_proc_environ_too():
    """Batch-mode ranks cannot re-execute (MPI already runs): the token must also leave
    the initial environment block that /proc/<pid>/environ shows."""
    import subprocess
    import sys

    code = ("from dask_mpi_lx.runtime.rank_main import drop_inherited_secrets\n"
            "drop_inherited_secrets()\n"
            "import os\n"
            "print(open('/proc/self/environ', 'rb').read().count(b'tok-123'),"
            " 'JUPYTERHUB_API_TOKEN' in os.environ, os.environ.get('KEEP'))\n")
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": "tok-123", "JPY_API_TOKEN": "tok-123",
           "KEEP": "yes"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["0", "False", "yes"]
