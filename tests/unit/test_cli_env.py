"""`dask-mpi-lx env`: how a terminal, an ssh session or a kernel that lost Jupyter's
environment finds the job's cluster on this host."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from dask_mpi_lx.cli import main
from dask_mpi_lx.runtime.scratch import owner_tag


def fake_job(parent, job_id: str, owner: str, address: str):
    """A job directory as rank 0 writes it (0700, its dask config inside)."""
    path = parent / f"dask-mpi-lx-{job_id}-job-{owner}-ab12cd"
    (path / "dask").mkdir(parents=True)
    path.chmod(0o700)
    (path / "dask" / "dask-mpi-lx-job.yaml").write_text(
        yaml.safe_dump({"scheduler-address": address}))
    return path


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("SLURM_JOB_ID", "PBS_JOBID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def jobs(tmp_path):
    """A parent for the fake job directories, emptied again after the test."""
    parent = tmp_path / "jobs"
    parent.mkdir()
    yield parent
    shutil.rmtree(parent)


def run(*args):
    return CliRunner().invoke(main, ["env", *args])


def test_the_only_running_job_is_found_and_printed_for_eval(jobs, clean_env):
    job = fake_job(jobs, "77", owner_tag(), "tls://10.0.0.5:4000")
    result = run("--job-directory", str(jobs))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"export DASK_CONFIG={job / 'dask'}",
                                          "export DASK_SCHEDULER_ADDRESS=tls://10.0.0.5:4000"]
    as_json = json.loads(run("--job-directory", str(jobs), "--format", "json").output)
    assert as_json == {"DASK_CONFIG": str(job / "dask"),
                       "DASK_SCHEDULER_ADDRESS": "tls://10.0.0.5:4000"}


def test_a_job_whose_rank0_is_gone_is_not_offered(jobs, clean_env):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = owner_tag(gone.pid)
    gone.wait()
    fake_job(jobs, "78", tag, "tls://10.0.0.5:4001")
    result = run("--job-directory", str(jobs))
    assert result.exit_code == 1
    assert "no running Dask-MPI-LX job of yours with a cluster on this host" in result.output


def test_several_jobs_need_a_job_id_and_the_batch_job_id_picks_one(jobs, clean_env,
                                                                   monkeypatch):
    fake_job(jobs, "80", owner_tag(), "tls://10.0.0.5:4080")
    fake_job(jobs, "81", owner_tag(), "tls://10.0.0.5:4081")
    result = run("--job-directory", str(jobs))
    assert result.exit_code == 1 and "several running jobs on this host (80, 81)" in result.output
    assert "4081" in run("--job-directory", str(jobs), "--job-id", "81").output
    monkeypatch.setenv("SLURM_JOB_ID", "80")  # a terminal inside the job knows its id
    assert "4080" in run("--job-directory", str(jobs)).output


def test_an_unknown_job_id_is_a_short_error(jobs, clean_env):
    result = run("--job-directory", str(jobs), "--job-id", "nope")
    assert result.exit_code == 1
    assert "no running Dask-MPI-LX job nope" in result.output
    assert "Traceback" not in result.output
