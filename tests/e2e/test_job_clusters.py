"""MPIJobCluster on the real single-node Slurm: clusters that run as MPI batch jobs of their
own, submitted as alice from outside any job (as from a login-node Lab): a two-job cluster,
the jobs' keys, pending to running, the owner killed, and bob kept out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e import batch
from tests.e2e.hub import jobs_of

pytestmark = pytest.mark.e2e

PROBE = (ROOT / "tests" / "probes" / "job_cluster_probe.py").read_text()
VENV_BIN = str(Path(sys.executable).parent)


def user_env(user: str) -> list[str]:
    """A login shell's environment, with what the stack's batch system needs (etc/local:
    the site's dask-mpi-lx config for PBS would say the same)."""
    system = batch.current()
    extra = [f"DMLX_TEST_BATCH={system.name}"]
    if system.name == "pbs":
        extra += ["DASK_MPI_LX__JOBS__BATCH_SYSTEM=pbs",
                  f"DASK_MPI_LX__JOBS__PROLOGUE={STACK_INFO.get('launcher_prologue', '')}"]
    path = f"{batch.PBS_BIN}:" if system.name == "pbs" else ""
    return ["env", "-i", f"HOME=/home/{user}", f"USER={user}", f"LOGNAME={user}",
            f"PATH={VENV_BIN}:{path}/usr/bin:/bin", *extra]


STACK_INFO: dict = {}


def as_user(user: str, *argv: str) -> list[str]:
    return ["/usr/sbin/runuser", "-u", user, "--", *user_env(user), *argv]


def run_probe(scenario: str, *args: str, timeout: float = 300) -> dict:
    proc = subprocess.run(as_user("alice", sys.executable, "-c", PROBE, scenario, *args),
                          capture_output=True, text=True, timeout=timeout, cwd="/tmp")
    lines = [x for x in proc.stdout.splitlines() if x.startswith("JSON ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][5:])


def names_queued(name: str) -> list[str]:
    return [j.job_id for j in batch.current().jobs("alice") if j.name == name]


@pytest.fixture(scope="module")
def slurm(stack):
    """The stack, with no job of alice's before or after (Slurm or PBS)."""
    STACK_INFO.clear()
    STACK_INFO.update(stack)
    batch.current().cancel_user("alice")
    yield stack
    batch.current().cancel_user("alice")


def test_two_job_cluster_scales_across_jobs_and_close_cancels_them(slurm):
    out = run_probe("lifecycle")
    assert out["sum"] == 3 and out["encrypted"] and out["sum_5"] == 42
    workers = out["workers_5"]
    assert len(workers) == 5
    first = [w for w in workers if w.startswith("rank-")]
    joined = [w for w in workers if w.startswith("job-")]
    assert len(first) == 2 and len(joined) == 3, workers  # one scheduler, workers of both jobs
    assert len(out["jobs_5"]) == 2 and all(j["state"] == "running" for j in out["jobs_5"].values())
    assert all(job_id in out["repr_5"] for job_id in out["jobs_5"]), out["repr_5"]
    assert out["workers_1"] == ["rank-2"] or len(out["workers_1"]) == 1
    assert out["queued_1"] and len(out["queued_1"]) == 1  # scaling down cancelled the joining job
    assert out["queued_after_close"] == ["none"] and out["dir_after_close"] is False
    # the keys reach the job through a private directory: not in the script or the job record
    assert out["modes"]["."] == "0o700"
    assert {m for f, m in out["modes"].items() if f.endswith(".pem")} == {"0o600"}
    for text in (out["script"], out["show_job"]):
        assert text and "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    assert "JUPYTERHUB_API_TOKEN" not in out["show_job"]


def test_pending_first_job_shows_pending_then_running(slurm):
    out = run_probe("pending", str(batch.current().node_cores()))
    assert out["returned_s"] < 20  # submitting does not wait for the queue
    assert "pending" in out["title_pending"] and out["workers_pending"] == 0, out
    assert "2 workers" in out["title_running"] and "running" in out["title_running"], out


@pytest.fixture
def held(slurm):
    proc = subprocess.Popen(as_user("alice", sys.executable, "-c", PROBE, "hold"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/tmp",
                            start_new_session=True)
    line = ""
    deadline = time.monotonic() + 240
    while not line.startswith("JSON ") and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    if not line.startswith("JSON "):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the probe did not hold a cluster: {proc.stderr.read()}")
    yield proc, json.loads(line[5:])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


BOB_CONNECTS = r'''
import asyncio, json, os, sys
from distributed.comm import connect
from distributed.security import Security
address, directory = sys.argv[1], sys.argv[2]
seen = {}
try:
    os.listdir(directory)
    seen["read_dir"] = "allowed"
except PermissionError:
    seen["read_dir"] = "denied"
async def attempt(security):
    try:
        comm = await connect(address, timeout=5, **security.get_connection_args("client"))
        await comm.write({"op": "identity"})
        await asyncio.wait_for(comm.read(), 5)
        return "answered"
    except Exception as e:
        return type(e).__name__
seen["own_keys"] = asyncio.run(attempt(Security.temporary()))
plain = address.replace("tls://", "tcp://")
async def tcp():
    try:
        comm = await connect(plain, timeout=5)
        await comm.write({"op": "identity"})
        await asyncio.wait_for(comm.read(), 5)
        return "answered"
    except Exception as e:
        return type(e).__name__
seen["plain_tcp"] = asyncio.run(tcp())
print("JSON " + json.dumps(seen))
'''


def test_bob_cannot_read_the_keys_or_use_the_scheduler(held):
    _, facts = held
    proc = subprocess.run(as_user("bob", sys.executable, "-c", BOB_CONNECTS, facts["address"],
                                  facts["directory"]), capture_output=True, text=True, timeout=120,
                          cwd="/tmp")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("JSON "))
    seen = json.loads(line[5:])
    assert seen["read_dir"] == "denied", seen
    assert seen["own_keys"] != "answered" and seen["plain_tcp"] != "answered", seen


def test_owner_killed_jobs_end_within_a_minute(held):
    proc, facts = held
    assert len(names_queued(facts["name"])) == 2
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)  # the kernel dies: no close(), no scancel
    while names_queued(facts["name"]) and time.monotonic() - t0 < 90:
        time.sleep(1)
    gone_after = time.monotonic() - t0
    assert not names_queued(facts["name"]), f"jobs still queued after {gone_after:.0f}s"
    assert gone_after < 60, gone_after
    assert jobs_of("alice") == []
