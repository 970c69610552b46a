"""Bad input under real MPI: an unusable job directory, a job directory wrecked during the job,
an inherited dask setting that would end the cluster. Each gives a clear message, the
command still runs, and nothing hangs or ends in a bare traceback."""

from __future__ import annotations

import re

import pytest

from tests import mpirun

pytestmark = pytest.mark.mpi


def test_job_directory_that_is_a_file_is_named_and_the_command_runs(dask_mpi_lx_cmd, tmp_path):
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd,
                                        "import os; print('RAN', os.environ.get('DASK_SCHEDULER_ADDRESS'))"),
                        np=3, env={"DASK_MPI_LX__JOB_DIRECTORY": str(not_a_dir)})
    assert result.returncode == 0, result.describe()
    assert "RAN None" in result.stdout  # the notebook starts, without a cluster
    # the scheduler rank's scratch or rank 0's job directory, whichever is made first
    assert re.search(rf"cannot create the (job|rank's scratch) directory under '{not_a_dir}'",
                     result.stderr), result.describe()
    assert "mpi-lx.job-directory" in result.stderr and "to a writable local directory" in \
        result.stderr
    assert "Traceback" not in result.stderr, result.describe()


def test_job_directory_wrecked_during_the_job_still_ends_cleanly(dask_mpi_lx_cmd):
    """The user (or a cleaner) deletes the job's files and leaves garbage in their place."""
    code = """
import os, shutil, pathlib
job = pathlib.Path(os.environ['DASK_CONFIG']).parent
shutil.rmtree(job)
job.write_text('garbage')
print('WRECKED', job)
"""
    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, code), np=3)
    assert result.returncode == 0, result.describe()
    assert "WRECKED" in result.stdout
    assert "cluster stopped" in result.stderr
    assert "Traceback" not in result.stderr, result.describe()


def test_inherited_idle_timeout_does_not_end_the_cluster(dask_mpi_lx_cmd):
    """A user's dask config with distributed.scheduler.idle-timeout must not close the
    scheduler under a notebook that merely thinks for a while."""
    code = ("import time\nfrom distributed import Client\nc = Client()\nc.wait_for_workers(1)\n"
            "time.sleep(6)\nprint('RESULT', c.submit(sum, [1, 2]).result(), flush=True)\n")
    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, code), np=3,
                        env={"DASK_DISTRIBUTED__SCHEDULER__IDLE_TIMEOUT": "2s"})
    assert result.returncode == 0, result.describe()
    assert "RESULT 3" in result.stdout, result.describe()
    assert "Scheduler closing after being idle" not in result.stderr  # distributed's words
