"""The suite-wide check (tests/conftest.py) that no test leaves a job directory, a rank
spill directory or a process of its own behind, and flags nothing of others."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import psutil

from dask_mpi_lx.launcher.jobdir import JobDirectory
from tests.conftest import TEST_MARK, descendants, leftovers, remove_leftovers


def test_a_new_job_directory_and_a_lost_process_are_flagged(tmp_path):
    mark = uuid.uuid4().hex
    before, procs_before = set(tmp_path.glob("dask-mpi-lx-*")), descendants()
    jd = JobDirectory(str(tmp_path), "5")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              env={TEST_MARK: mark})
    try:
        paths, procs = leftovers(before, procs_before, [tmp_path], mark, grace=0.5)
        assert paths == [jd.path]
        assert [p.pid for p in procs] == [orphan.pid]
        remove_leftovers(paths, procs)
        assert not jd.path.exists()
        assert orphan.wait(timeout=10) < 0
    finally:
        orphan.kill()
        orphan.wait()


def test_what_existed_before_and_live_jobs_of_others_are_not_flagged(tmp_path):
    old = JobDirectory(str(tmp_path), "1")
    before, procs_before = set(tmp_path.glob("dask-mpi-lx-*")), descendants()
    ready = tmp_path / "ready"
    # another session's job: not a process of this test (an orphan without its mark)
    code = ("import os, sys, time\n"
            "if os.fork():\n    os._exit(0)\n"
            "from dask_mpi_lx.launcher.jobdir import JobDirectory\n"
            f"JobDirectory({str(tmp_path)!r}, '2')\n"
            f"open({str(ready)!r}, 'w').write(str(os.getpid()))\n"
            "time.sleep(60)\n")
    subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, check=True)
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the other job to say it made its directory
    other = psutil.Process(int(ready.read_text()))
    try:
        assert set(tmp_path.glob("dask-mpi-lx-*")) - before  # the other job's directory
        paths, procs = leftovers(before, procs_before, [tmp_path], uuid.uuid4().hex, grace=0.2)
        assert paths == [] and procs == []  # its owner runs and is not this test's
    finally:
        other.kill()
        other.wait(timeout=10)
    old.remove()
    remove_leftovers(list(tmp_path.glob("dask-mpi-lx-*")), [])
