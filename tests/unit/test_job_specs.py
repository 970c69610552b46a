"""Pure parts of clusters that run as batch jobs: job shapes, scripts, batch-system output,
the cluster directory's checks, and the plan of a joining job."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import dask.config
import pytest

from dask_mpi_lx.exceptions import ConfigError, MPILXError, WorldTooSmallError
from dask_mpi_lx.jobs import batch_system
from dask_mpi_lx.jobs.batch_system import (
    PBS,
    BatchError,
    Slurm,
    current_batch_system,
    exec_hosts,
    parse_time_left,
    submit_environment,
)
from dask_mpi_lx.jobs.script import render, serve_command
from dask_mpi_lx.jobs.spec import JobSpec, job_spec, parse_walltime
from dask_mpi_lx.runtime.cluster_dir import ClusterDir, Contact
from dask_mpi_lx.runtime.roles import plan_join, plan_roles
from dask_mpi_lx.runtime.tls import new_job_tls


def test_job_spec_reads_the_config_and_overrides():
    with dask.config.set({"mpi-lx.jobs.cores": 8, "mpi-lx.jobs.queue": "casper@casper-pbs"}):
        spec = job_spec("jobs", nodes=2, walltime="00:30:00")
    assert (spec.cores, spec.nodes, spec.ranks_per_node, spec.queue) == (8, 2, 4, "casper@casper-pbs")
    assert spec.walltime == 1800 and spec.walltime_hms == "00:30:00"
    assert spec.workers(joining=False) == 6 and spec.workers(joining=True) == 7


@pytest.mark.parametrize("key, value, expected", [
    ("cores", 7, "a multiple of nodes"),
    ("cores", 1, "a whole number from 2 to"),
    ("cores", "²", "a whole number from 2 to"),  # str.isdigit() says yes; int() says no
    ("cores", 10**7, "a whole number from 2 to 1000000"),
    ("nodes", "two", "a whole number from 1 to"),
    ("nodes", 10**6, "a whole number from 1 to 10000"),
    ("threads", 2000, "a whole number from 1 to 1024"),
    ("walltime", "soon", "a walltime like"),
    ("walltime", "²:00:00", "a walltime like"),
    ("walltime", "9999:00:00", "at most 366 days"),
    ("queue", "debug; rm -rf ~", "letters, digits"),
    ("queue", "q" * 65, "at most 64 characters"),
    ("launcher", "ssh", "one of mpirun, srun, mpiexec"),
    ("batch_system", "lsf", "one of slurm, pbs"),
    ("worker_memory", "lots", "a size like"),
])
def test_job_spec_refuses_bad_values_by_name(key, value, expected):
    overrides = {"nodes": 2, "cores": 8} if key == "cores" and value == 7 else {}
    overrides[key] = value
    with pytest.raises(ConfigError, match=expected) as e:
        job_spec("jobs", **overrides)
    assert "mpi-lx.jobs." in str(e.value)


def test_parse_walltime_forms():
    assert parse_walltime("k", "01:02:03") == 3723
    assert parse_walltime("k", "45:00") == 2700
    assert parse_walltime("k", 90) == 90


def test_serve_command_quotes_and_places_ranks_per_node():
    spec = JobSpec(nodes=2, cores=8, launcher="mpiexec", threads=2, worker_memory=2**30)
    cmd = serve_command(spec, "/home/a b/.dask-mpi-lx/clusters/x", joining=True, program="dask-mpi-lx")
    assert cmd.startswith("mpiexec -n 8 -ppn 4 dask-mpi-lx serve --cluster-dir ")
    assert "'/home/a b/.dask-mpi-lx/clusters/x'" in cmd and cmd.endswith("--join")
    first = serve_command(JobSpec(), "/c", joining=False, program="dask-mpi-lx")
    assert first.startswith("mpirun --enable-recovery -np 4 ") and "--join" not in first


def test_job_clusters_start_their_ranks_as_the_hub_does():
    """One launcher table: a job cluster on Derecho (pals) gets -ppn on one node and depth
    binding with threads, exactly like the hub's notebook job of the same shape."""
    from dask_mpi_lx_hooks.options import DaskOptions
    from dask_mpi_lx_hooks.wrap import launch_command

    spec = job_spec("jobs", nodes=1, cores=8, threads=2, launcher="pals", batch_system="pbs")
    cmd = serve_command(spec, "/c", joining=False, program="dask-mpi-lx")
    assert cmd.startswith("mpiexec -n 8 -ppn 8 --cpu-bind depth -d 2 dask-mpi-lx serve ")
    options = DaskOptions(dask=True, cores=8, nodes=1, threads=2, worker_memory=2**30,
                          walltime="01:00:00", partition="main")
    hub = launch_command("jupyterhub-singleuser", options, "pals")
    assert hub.split(" dask-mpi-lx ")[0] == cmd.split(" dask-mpi-lx ")[0]


@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_rendered_scripts_run_the_serve_command_and_pass_bash(system, tmp_path):
    spec = JobSpec(batch_system=system, nodes=2, cores=8, queue="main", walltime=5400,
                   prologue="module load openmpi", account="NCAR0001")
    script = render(spec, serve_command(spec, "/c", joining=False, program="dask-mpi-lx"),
                    home="/home/alice")
    assert "dask-mpi-lx serve --cluster-dir /c" in script
    assert script.index("module load openmpi") < script.index("dask-mpi-lx serve")
    assert "01:30:00" in script and "PRIVATE KEY" not in script
    if system == "slurm":
        assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=4" in script
        assert "#SBATCH --partition=main" in script
    else:
        assert "#PBS -l select=2:ncpus=4:mpiprocs=4:ompthreads=1:mem=" in script and "#PBS -q main" in script
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_slurm_output_parsing():
    s = Slurm()
    assert s.parse_submitted("123;cluster\n") == "123"
    jobs = s.parse_list("12|RUNNING|n[1-2]\n13|PENDING|\n14|COMPLETING|n3\n")
    assert [(j.job_id, j.state, j.hosts) for j in jobs] == [
        ("12", "running", ("n[1-2]",)), ("13", "pending", ()), ("14", "ending", ("n3",))]
    assert s.submit_argv("dmlx-x", "P1") == ["sbatch", "--parsable", "--job-name=dmlx-x",
                                             "--account=P1"]


def test_slurm_hosts_are_expanded_like_pbs_hosts():
    """One form for both batch systems: "n[1-2]" becomes ("n1", "n2") (Slurm's own
    scontrol, which reads the list locally)."""
    import shutil

    from tests.conftest import missing_real_part

    if not shutil.which("scontrol"):
        missing_real_part("scontrol not installed (make test installs Slurm)")
    s = Slurm()
    assert asyncio.run(s.expand(("n[1-2],gpu07",))) == ("n1", "n2", "gpu07")
    assert asyncio.run(s.expand(("n3",))) == ("n3",)
    assert asyncio.run(s.expand(())) == ()


def test_pbs_lists_jobs_by_qselect_then_one_qstat_each(monkeypatch):
    records = {
        "7.casper-pbs": {"Job_Name": "dmlx-x", "job_state": "R",
                         "exec_host": "crhtc1/0*4+crhtc2/0*4"},
        "8.casper-pbs": {"Job_Name": "dmlx-x", "job_state": "Q"}}
    calls = []

    async def fake_run(argv, **kw):
        calls.append(argv)
        if argv[0] == "qselect":
            return "7.casper-pbs\n8.casper-pbs\n"
        return json.dumps({"Jobs": {argv[-1]: records[argv[-1]]}})

    monkeypatch.setattr(batch_system, "run", fake_run)
    jobs = asyncio.run(PBS().list("dmlx-x"))
    assert [(j.job_id, j.state, j.hosts) for j in jobs] == [
        ("7.casper-pbs", "running", ("crhtc1", "crhtc2")), ("8.casper-pbs", "pending", ())]
    assert calls[0][0] == "qselect" and calls[0][-2:] == ["-N", "dmlx-x"]
    assert calls[1:] == [["qstat", "-fx", "-F", "json", i] for i in records]
    assert PBS().submit_argv("n", "P") == ["qsub", "-f", "-N", "n", "-A", "P"]


def test_joining_jobs_start_after_the_first_job():
    assert Slurm().submit_argv("n", None, "12")[-1] == "--dependency=after:12"
    assert PBS().submit_argv("n", None, "7.srv")[-2:] == ["-W", "depend=after:7.srv"]
    assert not any("depend" in a for a in Slurm().submit_argv("n") + PBS().submit_argv("n"))


def test_pbs_hosts_in_order_once_each():
    assert exec_hosts("n2/0*2+n1/0*2+n2/1") == ("n2", "n1")
    assert exec_hosts("") == ()


def test_bad_qstat_answers_are_batch_errors(monkeypatch):
    for out in ("not json", "[1, 2]", '{"Jobs": 3}'):
        async def fake_run(argv, out=out, **kw):
            return out

        monkeypatch.setattr(batch_system, "run", fake_run)
        with pytest.raises(BatchError, match="qstat printed no job record"):
            asyncio.run(PBS().job_info("7.server"))


def test_current_batch_system_from_the_jobs_environment():
    assert current_batch_system({"SLURM_JOB_ID": "3"}).name == "slurm"
    assert current_batch_system({"PBS_JOBID": "3.server"}).name == "pbs"
    assert current_batch_system({}) is None


def test_time_left():
    assert parse_time_left("59:30") == 3570
    assert parse_time_left("1-00:00:10") == 86410
    assert parse_time_left("UNLIMITED") is None
    assert parse_time_left("100:00:00") == 360000  # PBS's walltime
    assert parse_time_left("") is None and parse_time_left("1:²") is None


def test_submit_environment_drops_credentials_and_the_jobs_own_variables():
    env = submit_environment({"PATH": "/bin", "JUPYTERHUB_API_TOKEN": "t", "SLURM_JOB_ID": "5",
                              "OMPI_COMM_WORLD_RANK": "0", "DASK_SCHEDULER_ADDRESS": "tls://x",
                              "DASK_CONFIG": "/tmp/x", "DASK_MPI_LX__BURST__ENABLED": "true",
                              "DASK_MPI_LX__JOBS__CORES": "8"})
    assert env == {"PATH": "/bin", "DASK_MPI_LX__JOBS__CORES": "8"}


def test_cluster_directory_is_private_and_refuses_others(tmp_path):
    tls = new_job_tls()
    d = ClusterDir.create(tmp_path / "clusters", "c1", tls)
    assert oct(os.stat(d.path).st_mode & 0o777) == "0o700"
    assert d.load_tls() == tls
    d.write_contact(Contact("12", "tls://10.0.0.1:8786", ("n1",)))
    assert d.read_contact() == Contact("12", "tls://10.0.0.1:8786", ("n1",))
    d.remove_contact("13")
    assert d.read_contact() is not None
    d.remove_contact("12")
    assert d.read_contact() is None
    os.chmod(d.path, 0o755)
    with pytest.raises(MPILXError, match="readable by others"):
        d.load_tls()
    os.chmod(d.path, 0o700)
    link = tmp_path / "link"
    link.symlink_to(d.path)
    with pytest.raises(MPILXError, match="symbolic link"):
        ClusterDir(link).load_tls()
    d.remove()
    assert not d.path.exists()


def test_joining_plan_runs_workers_on_every_rank_above_0_with_unique_names():
    plan = plan_join(["n1", "n1", "n2"], "42")
    assert plan.scheduler_rank is None and plan.worker_ranks == (1, 2) and plan.reachable
    assert plan.pool_rank == 0 and plan.worker_name(2) == "job-42-rank-2"
    assert plan_roles(["n1"] * 3).worker_name(2) == "rank-2"
    with pytest.raises(WorldTooSmallError, match="rank 0 \\+ 1 worker"):
        plan_join(["n1"], "42")


def test_job_extra_directives_become_one_line_each():
    spec = job_spec("jobs", job_extra=["--oversubscribe", "--constraint=skylake"])
    script = render(spec, "true", home="/h")
    assert "#SBATCH --oversubscribe\n#SBATCH --constraint=skylake\n" in script
    pbs = render(JobSpec(batch_system="pbs", job_extra=("-l place=scatter",)), "true", home="/h")
    assert "#PBS -l place=scatter\n" in pbs
    with pytest.raises(ConfigError, match="one-line batch directives"):
        job_spec("jobs", job_extra=["--a\n#SBATCH --b"])
