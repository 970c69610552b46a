import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Set in every test's environment; processes that inherit it are the test's own, even
#: after they lost their parent (a Jupyter server orphaned by a killed rank 0).
TEST_MARK = "DASK_MPI_LX_TEST_MARK"
LEFTOVER_GRACE = 15.0  # seconds for processes and files to go after a test (mpirun's SIGKILLs)


def missing_real_part(message: str) -> None:
    """A real part (MPI, Slurm, the hub, a browser) is missing: a failure under CI (true,
    1, yes), where `make test` must have installed it; a skip with the reason elsewhere."""
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def dask_mpi_lx_cmd() -> list[str]:
    """The launcher command as an installed user would run it."""
    exe = Path(sys.executable).parent / "dask-mpi-lx"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask_mpi_lx"]


@pytest.fixture
def probe() -> list[str]:
    return [sys.executable, str(ROOT / "tests" / "probes" / "notebook_probe.py")]


@pytest.fixture(autouse=True)
def _no_inherited_cluster(monkeypatch):
    """Tests start from a clean slate: no address or job config from the outer shell."""
    for name in ("DASK_SCHEDULER_ADDRESS", "DASK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    yield
    os.environ.pop("DASK_SCHEDULER_ADDRESS", None)


# --- nothing left behind ------------------------------------------------------------------

#: What the MPI runtime and Dask put in /tmp on their own: Open MPI's session directories
#: (ompi.<host>.<uid>/jf.<n>, left when a test or a batch system kills mpirun) and Dask's
#: default scratch space (a Worker or Scheduler made in the test process itself).
RUNTIME_TMP = ("ompi.*", "ompi.*/jf.*", "dask-scratch-space")


def runtime_tmp_entries() -> set[Path]:
    tmp = Path(tempfile.gettempdir())
    return {p for pattern in RUNTIME_TMP for p in tmp.glob(pattern)}


@pytest.fixture(scope="session", autouse=True)
def _tmp_left_as_found():
    """The run leaves /tmp as it found it: what Open MPI or Dask made there during the
    session goes at its end (the per-test check covers the product's own entries)."""
    before = runtime_tmp_entries()
    yield
    for path in sorted(runtime_tmp_entries() - before, key=lambda p: len(p.parts), reverse=True):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _dask_scratch_in_the_test_tree(tmp_path_factory):
    """A Worker or Scheduler made in the test process spills under pytest's own temporary
    directory, not in /tmp/dask-scratch-space."""
    import dask

    with dask.config.set({"temporary-directory": str(tmp_path_factory.getbasetemp())}):
        yield


def pytest_unconfigure(config):
    """pytest's own base temporary directory (/tmp/pytest-of-<user>/pytest-<n>) goes too,
    unless it was given with --basetemp."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None or config.option.basetemp:
        return
    try:
        base = factory.getbasetemp()
    except (OSError, ValueError):
        return
    shutil.rmtree(base, ignore_errors=True)
    current = base.parent / f"{base.name.rsplit('-', 1)[0]}-current"
    with contextlib.suppress(OSError):
        if current.is_symlink() and current.resolve() == base.resolve():
            current.unlink()
    with contextlib.suppress(OSError):
        base.parent.rmdir()  # empty: no other run's directory in it

def job_entries(*parents: Path) -> set[Path]:
    """Job directories, rank spill directories and dashboard sockets under ``parents``."""
    found: set[Path] = set()
    for parent in parents:
        with contextlib.suppress(OSError):
            found.update(parent.glob("dask-mpi-lx-*"))
    return found


def _identity(proc: psutil.Process) -> tuple[int, float] | None:
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return None


def descendants() -> set[tuple[int, float]]:
    """(pid, start time) of every process below this one."""
    return {i for p in psutil.Process().children(recursive=True) if (i := _identity(p))}


def _below_an_older_process(proc: psutil.Process, before: set[tuple[int, float]]) -> bool:
    """True if a process that ran before the test (a module's browser, say) started ``proc``
    (its children come and go on their own); False if this process is its nearest such."""
    me = os.getpid()
    with contextlib.suppress(psutil.Error):
        for parent in proc.parents():
            if parent.pid == me:
                return False
            if _identity(parent) in before:
                return True
    return False


def processes_started(mark: str, before: set[tuple[int, float]]) -> list[psutil.Process]:
    """Live processes the test started: new descendants of this process (not those that a
    process older than the test started), and any process that carries ``mark`` in its
    environment (an orphan has no parent of ours any more)."""
    found = {p.pid: p for p in psutil.Process().children(recursive=True)
             if _identity(p) not in before and not _below_an_older_process(p, before)}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid not in found and proc.environ().get(TEST_MARK) == mark:
                found[proc.pid] = proc
    alive = []
    for proc in found.values():
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


def _live_job_of_others(path: Path, mark: str) -> bool:
    """A new entry of a job this test did not start (another session's, a hub's) whose
    owner still runs: not this test's leftover."""
    from dask_mpi_lx.runtime.scratch import OWNED, owner_alive

    m = OWNED.match(path.name)
    if not m or not owner_alive(int(m["pid"]), int(m["start"])):
        return False
    owner = psutil.Process(int(m["pid"]))
    me = psutil.Process()
    if owner.pid == me.pid or me in owner.parents():  # this process, or one it started
        return False
    try:
        return owner.environ().get(TEST_MARK) != mark
    except psutil.Error:
        return True  # cannot read its environment: another user's


def leftovers(entries_before: set[Path], procs_before: set[tuple[int, float]],
              parents: list[Path], mark: str, grace: float,
              ) -> tuple[list[Path], list[psutil.Process]]:
    """What the test left: its new job entries and processes still there after ``grace``."""
    deadline = time.monotonic() + grace
    while True:
        procs = processes_started(mark, procs_before)
        paths = sorted(p for p in job_entries(*parents) - entries_before
                       if not _live_job_of_others(p, mark))
        if (not paths and not procs) or time.monotonic() > deadline:
            return paths, procs
        time.sleep(0.2)


def remove_leftovers(paths: list[Path], procs: list[psutil.Process]) -> None:
    """Clean up after a failed test, so that the next one starts clean."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


@pytest.fixture(autouse=True)
def _nothing_left_behind(request, monkeypatch):
    """Fail a test that leaves a job directory, a rank spill directory, a dashboard socket
    or a process of its own behind (after a grace period for asynchronous exits). What
    existed before the test, and live jobs that others started, are not its doing."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(TEST_MARK, mark)
    parents = [Path(tempfile.gettempdir())]
    entries_before, procs_before = job_entries(*parents), descendants()
    yield
    tmp_path = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp_path is not None:  # tests that point --job-directory there
        parents.append(tmp_path)
    paths, procs = leftovers(entries_before, procs_before, parents, mark, LEFTOVER_GRACE)
    if paths or procs:
        described = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                described.append(f"{proc.pid}: {' '.join(proc.cmdline())[:160]}")
        remove_leftovers(paths, procs)
        pytest.fail(f"the test left behind files {[str(p) for p in paths]} and processes "
                    f"{described}", pytrace=False)


def mpich_bin() -> Path:
    """The MPICH venv's bin (PyPI `mpich` + mpi4py + this package), built by `make test`."""
    venv = Path(os.environ.get("MPICH_VENV", "/opt/dask-mpi-lx/venv-mpich"))
    if not (venv / "bin" / "mpiexec").exists():
        missing_real_part(f"no MPICH venv at {venv} (`make mpich-venv` builds it)")
    return venv / "bin"
