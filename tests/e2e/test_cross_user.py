"""A second local user (bob) against alice's running job, and secrets kept out of sight.

Part of the reliability and security suite (issue 6): bob may share the node, its loopback
ports and /tmp, but must not run code on alice's cluster, read her job's files, or find her
keys or hub token in argv or logs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import batch
from tests.e2e.hub import Hub, run_in_kernel

pytestmark = pytest.mark.e2e

USER = "alice"
VENV_PYTHON = str(Path(sys.executable))


def as_bob(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/sbin/runuser", "-u", "bob", "--", *argv], capture_output=True,
                          text=True, timeout=timeout, cwd="/tmp")


@pytest.fixture(scope="module")
def job(hub: Hub) -> dict:
    """alice's server with 4 cores, and what her kernel sees of the job."""
    hub.stop(USER)
    response, _ = hub.spawn(USER, {"cores": 4})
    assert response.status in (201, 202), response.body
    out = run_in_kernel(hub, USER, r'''
import glob, json, os
import dask.config
from distributed import Client
with Client() as c:
    c.wait_for_workers(2, timeout=60)
    logs = [line for _, line in c.get_scheduler_logs(n=10_000)]
    logs += [line for w in c.get_worker_logs(n=10_000).values() for _, line in w]
print("JSON " + json.dumps({
    "address": os.environ["DASK_SCHEDULER_ADDRESS"],
    "dask_config": os.environ["DASK_CONFIG"],
    "token": os.environ["JUPYTERHUB_API_TOKEN"],
    "key_files": glob.glob(os.path.join(os.path.dirname(os.environ["DASK_CONFIG"]), "tls", "*")),
    "dask_logs": logs,
    "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID", "").split(".")[0],
    "dashboard_socket": dask.config.get("mpi-lx.job.dashboard-socket", None),
}))
''')
    assert out["error"] is None, out
    facts = json.loads(next(x for x in out["stdout"].splitlines() if x.startswith("JSON "))[5:])
    yield facts
    hub.stop(USER)


def test_bob_cannot_use_alices_scheduler(job):
    port = job["address"].rsplit(":", 1)[1]
    script = f"""
from distributed import Client
from distributed.security import Security
for label, kwargs in [("tcp", dict(address="tcp://127.0.0.1:{port}",
                                   security=Security(require_encryption=False))),
                      ("tls-own-key", dict(address="tls://127.0.0.1:{port}",
                                           security=Security.temporary()))]:
    try:
        with Client(timeout="5s", **kwargs) as c:
            print(label, "RAN", c.run_on_scheduler(lambda: __import__("os").getuid()))
    except (OSError, TimeoutError) as e:  # CommClosedError is an OSError; anything else fails
        print(label, "REFUSED", type(e).__name__)
"""
    result = as_bob(VENV_PYTHON, "-c", script)
    assert "RAN" not in result.stdout, result.stdout + result.stderr
    assert "tcp REFUSED" in result.stdout and "tls-own-key REFUSED" in result.stdout, \
        result.stdout + result.stderr


def test_bob_cannot_read_alices_job_files(job):
    job_dir = str(Path(job["dask_config"]).parent)
    targets = [job_dir, job["dask_config"], *job["key_files"]]
    assert job["key_files"], "the job directory holds the TLS files"
    for target in targets:
        result = as_bob("cat" if target in job["key_files"] else "ls", target)
        assert result.returncode != 0, (target, result.stdout)
        assert "Permission denied" in result.stderr, (target, result.stderr)


def test_no_key_or_token_in_argv_or_logs(job):
    argv = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "PRIVATE KEY" not in argv and job["token"] not in argv
    log = batch.current().job_log(USER, job["job_id"])
    text = log.read_text()
    assert "dask-mpi-lx[rank 1/4 scheduler" in text  # the log is the job's, and it is read
    assert "PRIVATE KEY" not in text and job["token"] not in text
    dask_logs = "\n".join(job["dask_logs"])  # what the dashboard's log pages show
    assert "Scheduler at" in dask_logs
    assert "PRIVATE KEY" not in dask_logs and job["token"] not in dask_logs


def _alices_tcp_ports() -> list[int]:
    """Every TCP port that a process of alice's listens on (seen as root)."""
    pids = set(subprocess.run(["pgrep", "-u", USER], capture_output=True, text=True).stdout.split())
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    ports = set()
    for line in ss.splitlines():
        if any(f"pid={p}," in line for p in pids):
            ports.add(int(line.split()[3].rsplit(":", 1)[1]))
    return sorted(ports)


def test_bob_cannot_reach_alices_dashboard(job):
    """The dashboard has no login of its own: behind the hub it serves only an owner-only
    Unix socket (the Jupyter server proxies it), and no TCP port of alice's job serves it."""
    socket_path = job["dashboard_socket"]
    assert socket_path and Path(socket_path).is_socket(), job
    assert Path(socket_path).stat().st_mode & 0o777 == 0o600
    ports = _alices_tcp_ports()
    assert ports, "alice's job listens somewhere (scheduler, workers, Jupyter)"
    script = f"""
import socket, urllib.request
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({socket_path!r}); print("SOCKET OPEN")
except OSError as e:
    print("SOCKET REFUSED", type(e).__name__)
for port in {ports!r}:
    for path in ("/status", "/info/main/workers.html", "/json/counts.json",
                 "/individual-plots.json", "/proxy/8000/127.0.0.1/hub/api"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{{port}}{{path}}", timeout=5) as r:
                body = r.read(2000).decode("utf-8", "replace")
            print("OPEN" if "dask" in body.lower() or "bokeh" in body.lower() else "OTHER",
                  port, path, r.status)
        except Exception as e:
            print("CLOSED", port, path, type(e).__name__)
"""
    result = as_bob(VENV_PYTHON, "-c", script)
    out = result.stdout + result.stderr
    assert "SOCKET REFUSED PermissionError" in out, out
    assert "OPEN" not in out.replace("SOCKET OPEN", "!"), out
    assert out.count("CLOSED") + out.count("OTHER") == 5 * len(ports), out
