"""Cluster directories: a half-made one goes, ended clusters' ones are found by the sweep,
and a notebook job's burst directory is its own (full id and token) and planned in turn."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from dask_mpi_lx.exceptions import ScaleError
from dask_mpi_lx.jobs.burst import burst_token, directory_name, job_name, plan_lock
from dask_mpi_lx.jobs.sweep import candidates, job_name_of
from dask_mpi_lx.runtime.tls import new_job_tls

DISK_FULL = r'''
import resource, signal, sys
from dask_mpi_lx.exceptions import MPILXError
from dask_mpi_lx.runtime.cluster_dir import ClusterDir
from dask_mpi_lx.runtime.tls import new_job_tls
tls = new_job_tls()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write past byte 0 fails: EFBIG
try:
    ClusterDir.create(sys.argv[1], "c1", tls)
except MPILXError as e:
    print(e)
'''


def test_a_directory_whose_keys_cannot_be_written_is_removed(tmp_path):
    out = subprocess.run([sys.executable, "-c", DISK_FULL, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert "cannot write the cluster's keys" in out.stdout, out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []  # no half-made directory with a key in it


def test_sweep_candidates_are_old_cluster_directories_of_ours(tmp_path):
    for name in ("0badc0de", "2fee2222", "burst-5.casper-pbs-1234abcd", "notes", "ABCDEF12"):
        (tmp_path / name).mkdir()
    (tmp_path / "c0ffee00").symlink_to(tmp_path / "notes")
    (tmp_path / "deadbeef").write_text("a file, not a directory")
    old = time.time() - 3600
    for name in ("0badc0de", "burst-5.casper-pbs-1234abcd", "notes", "ABCDEF12", "deadbeef"):
        os.utime(tmp_path / name, (old, old))
    found = candidates(tmp_path, grace=300)
    assert [(p.name, n) for p, n in found] == [
        ("0badc0de", "dmlx-0badc0de"),
        ("burst-5.casper-pbs-1234abcd", "dmlx-burst-5.casper-pbs-1234abcd")]
    assert candidates(tmp_path, grace=300, keep=("0badc0de",))[0][0].name.startswith("burst-")
    assert candidates(tmp_path / "missing") == []
    assert job_name_of("notes") is None


def test_burst_names_carry_the_full_job_id_and_a_token_of_the_job():
    tls, other = new_job_tls(), new_job_tls()
    token = burst_token(tls, "tls://10.0.0.1:8786")
    assert token == burst_token(tls, "tls://10.0.0.2:9999")  # every object of one job alike
    assert token != burst_token(other, "tls://10.0.0.1:8786")  # a later job: another
    assert len(token) == 8 and int(token, 16) >= 0
    assert directory_name("5.casper-pbs", token) == f"burst-5.casper-pbs-{token}"
    assert job_name("5.casper-pbs", token) == f"dmlx-burst-5.casper-pbs-{token}"
    assert job_name_of(directory_name("5.casper-pbs", token)) == job_name("5.casper-pbs", token)


def test_two_burst_plans_of_one_job_run_one_after_the_other(tmp_path):
    events: list[str] = []

    async def plan(who: str) -> None:
        async with plan_lock(tmp_path):
            events.append(f"{who} in")
            await asyncio.sleep(0.3)
            events.append(f"{who} out")

    async def both() -> None:
        await asyncio.gather(plan("a"), plan("b"))

    asyncio.run(both())
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


HOLD = r'''
import asyncio, sys, time
from pathlib import Path
from dask_mpi_lx.jobs.burst import plan_lock
async def hold():
    async with plan_lock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(30)
asyncio.run(hold())
'''


def test_a_burst_plan_in_another_process_holds_this_one_back(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"

        async def attempt() -> None:
            async with plan_lock(tmp_path, timeout=1):
                pass

        with pytest.raises(ScaleError, match="another cluster object of this job"):
            asyncio.run(attempt())
    finally:
        proc.kill()
        proc.wait()
    asyncio.run(attempt())  # free again once that process is gone


def test_a_job_clusters_shape_survives_its_directory(tmp_path):
    from dask_mpi_lx.jobs.spec import job_spec
    from dask_mpi_lx.runtime.cluster_dir import ClusterDir

    spec = job_spec("jobs", nodes=2, cores=8, threads=2, worker_memory="1GiB",
                    walltime="00:30:00", queue="main@desched1", batch_system="pbs",
                    job_extra=["-l place=scatter"])
    directory = ClusterDir.create(tmp_path, "1a2b3c4d", new_job_tls())
    directory.write_shape(spec.as_settings())
    assert job_spec("jobs", **directory.read_shape()) == spec
    assert oct(os.stat(directory.path / "jobs.yaml").st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("name, expected", [
    ("zz", "is not a job cluster's id"),
    ("../../etc", "is not a job cluster's id"),
    ("1a2b3c4d", "no job cluster 1a2b3c4d of yours"),
])
def test_from_name_says_what_is_wrong_with_a_name(tmp_path, name, expected):
    from dask_mpi_lx.exceptions import MPILXError
    from dask_mpi_lx.jobs.cluster import MPIJobCluster

    with pytest.raises(MPILXError, match=expected):
        MPIJobCluster.from_name(name, directory=str(tmp_path))
