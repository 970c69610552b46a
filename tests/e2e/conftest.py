"""The real stack for end-to-end tests: Slurm + JupyterHub + batchspawner, on one node or
on simulated nodes (network namespaces).

Brought up by etc/local/stack.py (as `make demo` does); each module asks for the node count
it needs, so the tests do not depend on their order. Under CI=true a missing part fails;
elsewhere (not root, no Slurm) the e2e tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, missing_real_part
from tests.e2e import lab_ui
from tests.e2e.hub import Hub

STACK = ROOT / "etc" / "local" / "stack.py"


def _unavailable(reason: str):
    missing_real_part(f"e2e stack unavailable: {reason}")


STACK_ENV_DROP = ("DASK_MPI_LX_TEST_MARK",)  # the daemons are the stack's, not a test's


def _stack(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in STACK_ENV_DROP}
    return subprocess.run([sys.executable, str(STACK), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="session")
def stack_control():
    """Checks the real parts once; the stack goes down at the end if this session started it."""
    if os.geteuid() != 0:
        _unavailable("the local stack starts Slurm and a hub as root")
    for tool in ("sbatch", "slurmctld", "munged", "mpirun", "ip", "nsenter"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            _unavailable(f"{tool} not installed (make test installs it)")
    already_up = "hub api      up" in _stack("status", timeout=60).stdout
    yield
    if not already_up:  # leave the machine as we found it
        _stack("down", timeout=180)


def bring_up(nodes: int) -> dict:
    """`stack.py up --nodes N` (a no-op when it already runs so); its JSON and secrets."""
    result = _stack("up", "--nodes", str(nodes), timeout=600)
    if result.returncode != 0:
        pytest.fail(f"stack.py up --nodes {nodes} failed:\n{result.stdout}\n{result.stderr}")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    with open(os.path.join(info["hub_dir"], "secrets.json")) as f:
        info.update(json.load(f))
    return info


@pytest.fixture(scope="module")
def stack(stack_control) -> dict:
    """The single-node stack (this machine is the only Slurm node)."""
    return bring_up(1)


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


