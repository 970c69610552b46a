import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from dask_mpi_lx.exceptions import MPILXError
from dask_mpi_lx.launcher.jobdir import JobDirectory
from dask_mpi_lx.runtime import scratch as jobdir
from dask_mpi_lx.runtime.scratch import (
    OWNED,
    make_rank_scratch,
    owner_alive,
    owner_tag,
    safe_job_id,
    sweep_leftovers,
)
from dask_mpi_lx.runtime.tls import new_job_tls, security_for


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_job_directory_is_private_and_removed(tmp_path):
    jd = JobDirectory(str(tmp_path), "42/../x")
    assert jd.path.parent == tmp_path and mode(jd.path) == 0o700
    paths = jd.write_tls(new_job_tls())
    cfg = jd.write_dask_config({"scheduler-address": "tls://a:1"})
    for p in [*map(Path, paths.values()), cfg]:
        assert mode(p) == 0o600
    assert yaml.safe_load(cfg.read_text()) == {"scheduler-address": "tls://a:1"}
    jd.remove()
    assert not jd.path.exists()


def test_unwritable_parent_gives_a_clear_error(tmp_path):
    with pytest.raises(MPILXError, match="cannot create the job directory.*--job-directory"):
        JobDirectory(str(tmp_path / "missing"), "1")


def test_tls_material_never_printed():
    tls = new_job_tls()
    assert "PRIVATE" not in repr(tls)
    sec = security_for(tls)
    assert sec.require_encryption is True
    assert "PRIVATE KEY" not in repr(sec)


# --- directories that only a SIGKILL could leave are found by the next job -------------

@pytest.fixture
def fakes(tmp_path):
    """``tmp_path`` for directories made up by the test; it removes what the sweep kept
    (the suite's leftover check would rightly flag them)."""
    yield tmp_path
    for path in tmp_path.glob("dask-mpi-lx-*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _dead_process() -> psutil.Process:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = psutil.Process(proc.pid)
    gone.create_time()  # cached: the name can still be made after it ended
    proc.wait()
    return gone


def _tag(proc: psutil.Process) -> str:
    """`owner_tag` of ``proc``, also once it has ended (its start time is cached)."""
    return (f"{proc.pid}.{round(proc.create_time() * 100)}"
            f"@{safe_job_id(socket.gethostname())}")


def _made_by(parent: Path, label: str, proc: psutil.Process, job: str = "7") -> Path:
    path = parent / f"dask-mpi-lx-{job}-{label}-{_tag(proc)}-abc123_x"
    path.mkdir(mode=0o700)
    (path / "tls").mkdir()
    (path / "tls" / "job-key.pem").write_text("key")
    return path


def test_leftovers_of_a_dead_owner_are_removed_and_live_ones_kept(fakes):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = psutil.Process(sleeper.pid)
        kept = [_made_by(fakes, "job", live), _made_by(fakes, "rank3", live),
                _made_by(fakes, "job", psutil.Process())]  # this process: alive
        dead = _dead_process()
        assert not dead.is_running()
        gone = [fakes / f"dask-mpi-lx-7-job-{dead.pid}.{round(dead.create_time() * 100)}"
                           f"@{safe_job_id(socket.gethostname())}-q1w2e3r4",
                fakes / f"dask-mpi-lx-slurm_9-rank2-{dead.pid}."
                           f"{round(dead.create_time() * 100)}"
                           f"@{safe_job_id(socket.gethostname())}-zz9_8"]
        for path in gone:
            path.mkdir()
            (path / "spill").write_text("x")
        assert sorted(sweep_leftovers(str(fakes))) == sorted(gone)
        assert all(p.exists() for p in kept) and not any(p.exists() for p in gone)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_reused_pid_does_not_keep_a_leftover(fakes):
    me = psutil.Process()
    stamp = round(me.create_time() * 100) - 500  # same pid, an older process: it ended
    path = fakes / (f"dask-mpi-lx-7-job-{me.pid}.{stamp}"
                       f"@{safe_job_id(socket.gethostname())}-abcdefgh")
    path.mkdir()
    assert sweep_leftovers(str(fakes)) == [path] and not path.exists()


def test_other_hosts_other_users_files_and_foreign_names_are_never_touched(fakes):
    dead = _dead_process()
    stamp = round(dead.create_time() * 100)
    other_host = fakes / f"dask-mpi-lx-7-job-{dead.pid}.{stamp}@elsewhere-abcdefgh"
    old_style = fakes / "dask-mpi-lx-7-job-abcdefgh"  # no owner in the name
    a_file = fakes / f"dask-mpi-lx-7-job-{dead.pid}.{stamp}@{socket.gethostname()}-fil"
    target = fakes / "target"
    link = fakes / f"dask-mpi-lx-7-job-{dead.pid}.{stamp}@{socket.gethostname()}-lnk"
    for d in (other_host, old_style, target):
        d.mkdir()
    a_file.write_text("")
    link.symlink_to(target)
    assert sweep_leftovers(str(fakes)) == []
    assert all(p.exists() for p in (other_host, old_style, a_file, link, target))


def test_other_users_directories_are_never_touched(fakes, monkeypatch):
    dead = _dead_process()
    path = fakes / (f"dask-mpi-lx-7-job-{dead.pid}.{round(dead.create_time() * 100)}"
                       f"@{safe_job_id(socket.gethostname())}-abcdefgh")
    path.mkdir()
    bob = os.getuid() + 1
    monkeypatch.setattr(jobdir.os, "getuid", lambda: bob)  # as if this were bob's job
    assert sweep_leftovers(str(fakes)) == [] and path.exists()


def test_a_new_job_directory_and_spill_directory_name_their_owner(tmp_path):
    jd = JobDirectory(str(tmp_path), "slurm/42")
    scratch = Path(make_rank_scratch(str(tmp_path), "slurm/42", 3))
    for path, label in ((jd.path, "job"), (scratch, "rank3")):
        m = OWNED.match(path.name)
        assert m, path.name
        assert f"-{label}-{owner_tag()}-" in path.name
        assert owner_alive(int(m["pid"]), int(m["start"]))
    jd.remove()
    scratch.rmdir()


def test_starting_a_job_sweeps_the_leftovers_first(fakes):
    dead = _dead_process()
    left = _made_by(fakes, "job", dead)
    jd = JobDirectory(str(fakes), "8")
    assert not left.exists() and jd.path.exists()
    left = _made_by(fakes, "rank2", dead)
    Path(make_rank_scratch(str(fakes), "8", 2)).rmdir()
    assert not left.exists()
    jd.remove()


def test_remove_takes_away_whatever_replaced_the_directory(tmp_path):
    jd = JobDirectory(str(tmp_path), "9")
    jd.path.rmdir()
    jd.path.write_text("garbage")  # a user wrecked the job's files during the job
    jd.remove()
    assert not jd.path.exists()


def test_a_dashboard_socket_of_a_dead_rank0_is_swept_and_a_live_one_kept():
    import socket as socket_module
    import tempfile

    fakes = Path(tempfile.mkdtemp(prefix="s", dir="/tmp"))  # a socket path holds 108 bytes

    def bound(name: str) -> socket_module.socket:
        s = socket_module.socket(socket_module.AF_UNIX)
        s.bind(str(fakes / name))
        return s

    dead = _dead_process()
    stale = bound(f"dask-mpi-lx-7-dashboard-{_tag(dead)}-0123abcd.sock")
    live = bound(f"dask-mpi-lx-8-dashboard-{_tag(psutil.Process())}-4567ef01.sock")
    try:
        removed = sweep_leftovers(str(fakes))
        assert [p.name for p in removed] == [f"dask-mpi-lx-7-dashboard-{_tag(dead)}-0123abcd.sock"]
        assert (fakes / f"dask-mpi-lx-8-dashboard-{_tag(psutil.Process())}-4567ef01.sock").exists()
    finally:
        stale.close()
        live.close()
        shutil.rmtree(fakes)
