"""The real stack for end-to-end tests: Slurm or OpenPBS + JupyterHub + batchspawner, on one
node or on simulated nodes (network namespaces).

Brought up by etc/local/stack.py (as `make demo` does); each module asks for the node count
it needs, so the tests do not depend on their order. Every e2e test runs once per batch
system (the ``batch`` parameter, `DASK_MPI_LX_TEST_BATCH` = "slurm,pbs" by default), but
those marked ``slurm_only``: Slurm's own tools (srun, sinfo), the docs' Slurm examples, and
the lost-node test (PBS keeps such a job running longer than the test waits).
The test users' homes end the session as they began it (`_homes_left_clean`).
Under CI=true a missing part fails; elsewhere (not root, no Slurm) they are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, missing_real_part
from tests.e2e import batch as batch_systems
from tests.e2e import diagnosis, lab_ui
from tests.e2e.hub import Hub

STACK = ROOT / "etc" / "local" / "stack.py"
BATCHES = [b for b in os.environ.get("DASK_MPI_LX_TEST_BATCH", "slurm,pbs").split(",") if b]


def pytest_collection_modifyitems(config, items):
    """PBS runs every e2e test but those of Slurm's own tools (``slurm_only``)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("batch") == "pbs" and item.get_closest_marker("slurm_only"):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter):
    """A failed spawn's job log, hub log and batch view, last: CI keeps a run's tail."""
    if diagnosis.RECORDED:
        terminalreporter.write_sep("=", "first failed spawns: what the stack said")
        terminalreporter.write_line(diagnosis.summary())


def _unavailable(reason: str):
    missing_real_part(f"e2e stack unavailable: {reason}")


STACK_ENV_DROP = ("DASK_MPI_LX_TEST_MARK",)  # the daemons are the stack's, not a test's


def _stack(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in STACK_ENV_DROP}
    return subprocess.run([sys.executable, str(STACK), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


TEST_USERS = ("alice", "bob")


def home_entries(user: str) -> set[Path]:
    """A test user's top-level home entries, those of ~/.dask-mpi-lx, and its cluster
    directories (keys inside)."""
    try:
        home = Path(f"~{user}").expanduser()
    except RuntimeError:  # no such user yet: the stack creates the test users
        return set()
    own = home / ".dask-mpi-lx"
    found: set[Path] = set()
    for folder in (home, own, own / "clusters"):
        if folder.is_dir() and not folder.is_symlink():
            found |= set(folder.iterdir())
    return found


@pytest.fixture(scope="session", autouse=True)
def _homes_left_clean():
    """Whatever the session's jobs and servers wrote in the test users' homes is removed at
    its end (job logs, Jupyter's state); a cluster directory left there (private keys) also
    fails the session: the product must remove those itself."""
    before = {user: home_entries(user) for user in TEST_USERS}
    yield
    keys = []
    for user in TEST_USERS:
        new = home_entries(user) - before[user]
        keys += [str(p) for p in new if p.parent.name == "clusters"]
        for path in sorted(new, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    if keys:
        pytest.fail(f"cluster directories (private keys) were left in the homes: {keys}",
                    pytrace=False)


@pytest.fixture(scope="session")
def stack_control():
    """Checks the real parts once; the stack goes down at the end if this session started it."""
    if os.geteuid() != 0:
        _unavailable("the local stack starts Slurm and a hub as root")
    for tool in ("sbatch", "slurmctld", "munged", "mpirun", "ip", "nsenter"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            _unavailable(f"{tool} not installed (make test installs it)")
    os.environ["PATH"] = f"{batch_systems.PBS_BIN}:{os.environ.get('PATH', '')}"
    already_up = "hub api      up" in _stack("status", timeout=60).stdout
    yield
    if not already_up:  # leave the machine as we found it
        _stack("down", timeout=180)


@pytest.fixture(scope="session", params=BATCHES)
def batch(request, stack_control) -> batch_systems.Slurm | batch_systems.PBS:
    """The batch system the stack runs for these tests (tests are grouped by it)."""
    return batch_systems.use(request.param)


def bring_up(nodes: int, batch: str | None = None) -> dict:
    """`stack.py up --batch B --nodes N` (a no-op when it already runs so); its JSON and
    secrets. B: the batch system of the tests running now."""
    batch = batch or batch_systems.current().name
    result = _stack("up", "--batch", batch, "--nodes", str(nodes), timeout=1200)
    if result.returncode != 0:
        pytest.fail(f"stack.py up --batch {batch} --nodes {nodes} failed:\n{result.stdout}\n"
                    f"{result.stderr}")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    with open(os.path.join(info["hub_dir"], "secrets.json")) as f:
        info.update(json.load(f))
    return info


@pytest.fixture(scope="module")
def stack(batch) -> dict:
    """The single-node stack (this machine is the only node)."""
    return bring_up(1, batch.name)


@pytest.fixture(scope="module")
def hub(stack) -> Hub:
    return Hub(stack["hub_url"], stack["api_token"])


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(lab_ui.CHROMIUM):
        missing_real_part("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=lab_ui.CHROMIUM, args=lab_ui.ARGS)
        yield browser
        browser.close()


