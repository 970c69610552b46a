"""MPIJobCluster on the real single-node Slurm: clusters that run as MPI batch jobs of their
own, submitted as alice from outside any job (as from a login-node Lab): a two-job cluster,
the jobs' keys, pending to running, the owner killed, and bob kept out."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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
    assert proc.returncode == 0 and lines, (f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
                                            + job_log_tail(proc.stderr))
    return json.loads(lines[-1][5:])


def job_log_tail(text: str) -> str:
    """The end of the job log a cluster's error names ("see /home/alice/12.OU")."""
    import re

    m = re.search(r"see (/home/\S+)", text)
    if not m or not os.path.exists(m[1]):
        return ""
    return f"\n--- {m[1]}:\n" + "\n".join(Path(m[1]).read_text().splitlines()[-40:])


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
    assert out["address"] == f"mpi-lx://{out['repr_5'].split()[2].rstrip(':')}", out
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
    # cancelled by scale(1) and close(), not ended by the lease (that would be COMPLETED)
    finals = {i: batch.current().final_state(i) for i in out["jobs_5"]}
    assert set(finals.values()) == {"CANCELLED"}, finals
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


CONNECTS = r'''
import asyncio, json, os, socket, ssl, sys
from distributed.comm import connect
from distributed.security import Security
address, directory, use_dir_keys = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
seen = {}
try:
    os.listdir(directory)
    seen["read_dir"] = "allowed"
except PermissionError:
    seen["read_dir"] = "denied"
def why(e):
    cause = e.__cause__ or e.__context__
    return f"{type(e).__name__}: {e} ({type(cause).__name__}: {cause})"
async def attempt(address, security=None):
    try:
        comm = await connect(address, timeout=5, **(security.get_connection_args("client")
                                                   if security else {}))
        await comm.write({"op": "identity"})
        await asyncio.wait_for(comm.read(), 5)
        return "answered"
    except Exception as e:
        return why(e)
if use_dir_keys:  # the owner: the cluster directory's keys
    from dask_mpi_lx.runtime.cluster_dir import ClusterDir
    from dask_mpi_lx.runtime.tls import security_for
    seen["dir_keys"] = asyncio.run(attempt(address, security_for(ClusterDir(directory).load_tls())))
seen["own_keys"] = asyncio.run(attempt(address, Security.temporary()))
seen["plain_tcp"] = asyncio.run(attempt(address.replace("tls://", "tcp://")))
# a TLS client that trusts anything and shows no certificate: the scheduler must refuse
# it in the handshake
host, port = address[len("tls://"):].rsplit(":", 1)
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
try:
    with socket.create_connection((host, int(port)), 5) as raw, \
            context.wrap_socket(raw) as tls:
        tls.write(b"\0" * 8)
        seen["no_cert"] = f"answered {tls.read(8)!r}"
except Exception as e:
    seen["no_cert"] = f"{type(e).__name__}: {e}"
print("JSON " + json.dumps(seen))
'''


def connects(user: str, facts: dict) -> dict:
    proc = subprocess.run(as_user(user, sys.executable, "-c", CONNECTS, facts["address"],
                                  facts["directory"], "1" if user == "alice" else "0"),
                          capture_output=True, text=True, timeout=120, cwd="/tmp")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("JSON ")), None)
    assert line, proc.stdout + proc.stderr
    return json.loads(line[5:])


def test_bob_cannot_read_the_keys_or_use_the_scheduler(held):
    """Refused by TLS, not by chance: bob's keys fail the certificate check, a client with
    no certificate is refused in the handshake, plain TCP gets nothing; alice's keys from
    the directory answer through the same probe."""
    _, facts = held
    alice = connects("alice", facts)
    assert alice["dir_keys"] == "answered", alice  # the probe can see a scheduler answer
    seen = connects("bob", facts)
    assert seen["read_dir"] == "denied", seen
    assert "CERTIFICATE_VERIFY_FAILED" in seen["own_keys"], seen
    assert "CERTIFICATE_REQUIRED" in seen["no_cert"], seen
    assert seen["plain_tcp"] != "answered" and "dir_keys" not in seen, seen


SWEEP = r'''
import asyncio, json, sys
from dask_mpi_lx.jobs.batch_system import batch_system
from dask_mpi_lx.jobs.sweep import sweep_dead_clusters
removed = asyncio.run(sweep_dead_clusters(sys.argv[1], batch_system(sys.argv[2]),
                                          grace=float(sys.argv[3])))
print("JSON " + json.dumps(sorted(p.name for p in removed)))
'''


def sweep_as_alice(parent: str, grace: float) -> list[str]:
    proc = subprocess.run(as_user("alice", sys.executable, "-c", SWEEP, parent,
                                  batch.current().name, str(grace)),
                          capture_output=True, text=True, timeout=120, cwd="/tmp")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("JSON ")), None)
    assert line, proc.stdout + proc.stderr
    return json.loads(line[5:])


def test_sweep_removes_ended_clusters_directories_only(slurm):
    """A cluster directory whose jobs the batch system no longer lists goes; one with a
    queued job, one just made, and anything not a cluster's stay."""
    parent = Path("/home/alice/.dask-mpi-lx/sweep-test")
    made = {"dead": "0badc0de", "live": "1dea1111", "young": "2fee2222",
            "burst": "burst-7.old-server-9abc9abc", "other": "notes"}
    blocker = ""
    shutil.rmtree(parent, ignore_errors=True)  # what an interrupted run may have left
    try:
        subprocess.run(as_user("alice", "mkdir", "-m", "700", "-p",
                               *(str(parent / d / "tls") for d in made.values())), check=True)
        old = time.time() - 3600
        for name in ("dead", "live", "burst", "other"):
            os.utime(parent / made[name], (old, old))
        submitted = subprocess.run(as_user("alice", *batch.current().blocker_argv(
            1, name=f"dmlx-{made['live']}")), capture_output=True, text=True, cwd="/tmp")
        blocker = submitted.stdout.strip()
        assert submitted.returncode == 0 and blocker, submitted.stderr
        removed = sweep_as_alice(str(parent), 300)
        left = sorted(p.name for p in parent.iterdir())
    finally:
        if blocker:
            subprocess.run(batch.current().cancel_argv(blocker), capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)
    assert removed == sorted([made["dead"], made["burst"]]), removed
    assert left == sorted([made["live"], made["young"], made["other"]]), left


FROM_NAME = r'''
import json, sys
from distributed import Client
from dask_mpi_lx import MPIJobCluster
cluster = MPIJobCluster.from_name(sys.argv[1])
with Client(cluster) as client:
    facts = {"sum": client.submit(sum, [1, 2]).result(), "title": cluster.title,
             "jobs": sorted(cluster.jobs), "workers": len(cluster.scheduler_info["workers"])}
cluster.close()  # attached by name: detaches, the jobs go on
print("JSON " + json.dumps(facts))
'''


def settled(read, expected, timeout: float = 60):
    """``read()`` once it equals ``expected`` (or its last value after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return value


def as_alice(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(as_user("alice", *argv), capture_output=True, text=True,
                          timeout=timeout, cwd="/tmp")


def test_a_job_cluster_is_found_again_from_another_process_and_a_terminal(held):
    """A second process of alice's attaches by id and computes, and its close() leaves the
    jobs; `dask-mpi-lx clusters list | scale | close` from a terminal."""
    _, facts = held
    cluster_id = Path(facts["directory"]).name
    jobs = sorted(facts["jobs"])
    listed = as_alice(f"{VENV_BIN}/dask-mpi-lx", "clusters", "list")
    line = next((x for x in listed.stdout.splitlines() if x.startswith(cluster_id)), "")
    assert listed.returncode == 0 and all(f"{j} running" in line for j in jobs), listed
    assert line.split()[2 * len(jobs) + 1] == "5", line  # workers, after "<id> <state>," pairs

    proc = as_alice(sys.executable, "-c", FROM_NAME, cluster_id)
    out = next((x for x in proc.stdout.splitlines() if x.startswith("JSON ")), None)
    assert out, proc.stdout + proc.stderr
    found = json.loads(out[5:])
    assert found["sum"] == 3 and found["jobs"] == jobs and found["workers"] == 5, found
    assert cluster_id in found["title"]
    assert sorted(names_queued(facts["name"])) == jobs  # detaching ended nothing

    scaled = as_alice(f"{VENV_BIN}/dask-mpi-lx", "clusters", "scale", cluster_id, "2")
    assert scaled.returncode == 0, scaled.stderr
    first = [i for i, j in facts["jobs"].items() if j["first"]]
    # the joining job went (cancelled, out of the queue once it has ended); the first stays
    assert settled(lambda: names_queued(facts["name"]), first) == first

    closed = as_alice(f"{VENV_BIN}/dask-mpi-lx", "clusters", "close", cluster_id)
    assert closed.returncode == 0 and "closed MPI jobs " + cluster_id in closed.stdout, closed
    assert settled(lambda: names_queued(facts["name"]), []) == []
    assert not Path(facts["directory"]).exists()
    assert {batch.current().final_state(i) for i in jobs} == {"CANCELLED"}

    bad = as_alice(f"{VENV_BIN}/dask-mpi-lx", "clusters", "close", cluster_id)
    assert bad.returncode != 0 and f"no job cluster {cluster_id}" in bad.stderr, bad
    assert "Traceback" not in bad.stderr


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
    # its directory (keys inside) stayed; the next cluster's sweep removes it
    directory = Path(facts["directory"])
    assert directory.is_dir()
    assert directory.name in sweep_as_alice(str(directory.parent), 0)
    assert not directory.exists()


LAB_CONFIG = ["DASK_LABEXTENSION__FACTORY__MODULE=dask_mpi_lx.cluster.lab_factory",
              "DASK_LABEXTENSION__FACTORY__CLASS=lab_cluster",
              "DASK_MPI_LX__JOBS__CORES=4", "DASK_MPI_LX__JOBS__WALLTIME=00:10:00"]


def lab_server(port: int, token: str) -> subprocess.Popen:
    """alice's Jupyter server outside any job (a login node's Lab), configured as a site's
    admin guide says: NEW launches job clusters."""
    return subprocess.Popen(
        as_user("alice", *LAB_CONFIG, f"{VENV_BIN}/jupyter-server", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
                "--ServerApp.root_dir=/tmp"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/tmp",
        start_new_session=True)


def lab_request(port: int, token: str, method: str, path: str, timeout: float = 120):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def test_a_lab_outside_any_job_lists_its_job_cluster_again_after_a_restart(slurm):
    """NEW in a Lab outside any job; its server stops and starts again within the lease:
    the Dask tab lists the cluster again with its workers, and SHUTDOWN cancels its jobs."""
    import secrets
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)

    def cards() -> list[dict]:
        status, body = lab_request(port, token, "GET", "/dask/clusters")
        return body if status == 200 else []

    servers = [lab_server(port, token)]
    try:
        assert settled(lambda: lab_request(port, token, "GET", "/api/status")[0], 200) == 200
        status, new = lab_request(port, token, "PUT", "/dask/clusters")
        assert status == 200, new
        running = settled(lambda: [c["workers"] for c in cards()], [2], timeout=180)
        assert running == [2], (running, jobs_of("alice"))
        title = cards()[0]["name"].split(":")[0]  # "MPI jobs <id>"
        jobs_before = sorted(jobs_of("alice"))
        servers[0].terminate()  # a restart: nothing closes the cluster, its jobs run on
        servers[0].wait(30)
        servers.append(lab_server(port, token))
        again = settled(lambda: [(c["name"].split(":")[0], c["workers"]) for c in cards()],
                        [(title, 2)], timeout=60)
        jobs_after = sorted(jobs_of("alice"))
        card = cards()[0]
        status, _ = lab_request(port, token, "DELETE", f"/dask/clusters/{card['id']}")
        left = settled(lambda: jobs_of("alice"), [], timeout=60)
    finally:
        for server in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(30)
    log = "".join(server.stdout.read() for server in servers)
    assert title.startswith("MPI jobs ") and again == [(title, 2)], (again, log[-3000:])
    assert jobs_after == jobs_before, (jobs_before, jobs_after)  # the same job, kept
    assert status in (200, 204)
    assert left == [], left
    assert "listed again" in log, log[-3000:]
