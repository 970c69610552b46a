"""The real stack for end-to-end tests: single-node Slurm + JupyterHub + batchspawner.

Brought up by etc/local/stack.py (as `make demo` does). Under CI=true a missing part fails;
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
from tests.e2e.hub import Hub

STACK = ROOT / "etc" / "local" / "stack.py"


def _unavailable(reason: str):
    missing_real_part(f"e2e stack unavailable: {reason}")


@pytest.fixture(scope="session")
def stack():
    if os.geteuid() != 0:
        _unavailable("the local stack starts Slurm and a hub as root")
    for tool in ("sbatch", "slurmctld", "munged", "mpirun"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            _unavailable(f"{tool} not installed (make test installs it)")
    status = subprocess.run([sys.executable, str(STACK), "status"], capture_output=True,
                            text=True, timeout=60).stdout
    already_up = "hub api      up" in status
    result = subprocess.run([sys.executable, str(STACK), "up"], capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        pytest.fail(f"stack.py up failed:\n{result.stdout}\n{result.stderr}")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    with open(os.path.join(info["hub_dir"], "secrets.json")) as f:
        secrets = json.load(f)
    info.update(secrets)
    yield info
    if not already_up:  # leave the machine as we found it
        subprocess.run([sys.executable, str(STACK), "down"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def hub(stack) -> Hub:
    return Hub(stack["hub_url"], stack["api_token"])
