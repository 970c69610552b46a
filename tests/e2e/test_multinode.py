"""Multi-node jobs on the simulated cluster (etc/local/nodes.py: 3 nodes n1..n3, each a
network + UTS namespace with its own slurmd): alice spawns a 2-node server through the hub,
her bare `Client()` computes on both hosts, every socket of the job is accounted for, bob on
the other node reaches nothing of hers, the Dask tab shows the card, and a lost node costs
its workers, not the notebook's node, and leaves nothing behind."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e import batch
from tests.e2e.conftest import bring_up
from tests.e2e.hub import Hub, assert_nothing_left, jobs_of, run_in_kernel, run_json_in_kernel
from tests.e2e.lab_ui import card_title, login, open_dask_tab, shot, wait_card_workers

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "etc" / "local"))
import nodes  # noqa: E402  (etc/local/nodes.py: the simulated network's one definition)

pytestmark = pytest.mark.e2e

USER = "alice"
STACK_NODES = 3
OPTIONS = {"cores": 8, "nodes": 2, "threads": 1, "worker_memory": "1GiB", "walltime": "00:30:00"}
WORKERS = OPTIONS["cores"] - 2
VENV_PYTHON = sys.executable
# Open MPI's, Slurm's and PBS's own processes: their sockets are the runtime's
# (docs/security.md lists them)
MPI_RUNTIME = {"mpirun", "orterun", "orted", "prterun", "prted", "srun", "slurmstepd", "pbs_demux"}

KERNEL_FACTS = r'''
import json, os, socket
import dask.config
from distributed import Client
c = Client()
c.wait_for_workers(WORKERS, timeout=90)
info = c.scheduler_info()
print("JSON " + json.dumps({
    "scheduler": c.scheduler.address,
    "worker_ips": sorted(w["host"] for w in info["workers"].values()),
    "dask_addresses": sorted([c.scheduler.address, *info["workers"],
                              *(w["nanny"] for w in info["workers"].values() if w.get("nanny"))]),
    "hostnames": sorted(set(c.run(socket.gethostname).values())),
    "kernel_host": socket.gethostname(),
    "sum": c.submit(sum, [1, 2]).result(),
    "ca_file": dask.config.get("distributed.comm.tls.ca-file"),
    "dashboard_socket": dask.config.get("mpi-lx.job.dashboard-socket", None),
    "job_id": os.environ.get("SLURM_JOB_ID") or os.environ["PBS_JOBID"].split(".")[0],
}))
c.close()
'''.replace("WORKERS", str(WORKERS))


@pytest.fixture(scope="module")
def mstack(batch) -> dict:
    return bring_up(STACK_NODES, batch.name)


@pytest.fixture(scope="module")
def mhub(mstack) -> Hub:
    return Hub(mstack["hub_url"], mstack["api_token"])


def spawn_two_nodes(hub: Hub) -> list[str]:
    hub.stop(USER)
    response, messages = hub.spawn(USER, OPTIONS, timeout=180)
    assert response.status in (201, 202), response.body
    state = hub.server(USER)
    assert state and state["ready"], (state, messages)
    return messages


@pytest.fixture(scope="module")
def job(mhub: Hub) -> dict:
    messages = spawn_two_nodes(mhub)
    facts = run_json_in_kernel(mhub, USER, KERNEL_FACTS, timeout=150)
    facts["messages"] = messages
    facts["server_url"] = mhub.server(USER)["url"]
    yield facts
    mhub.stop(USER)
    assert_nothing_left(USER)


def job_nodes(job_id: str) -> list[str]:
    return batch.current().hosts(job_id)


def node_index(name: str) -> int:
    return int(name.lstrip("n"))


def in_node(i: int, *argv: str, user: str | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    """``argv`` in node i's network namespace (as ``user`` if given)."""
    cmd = ["nsenter", f"--net=/run/netns/{nodes.netns(i)}"]
    if user:
        cmd += ["/usr/sbin/runuser", "-u", user, "--"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=timeout,
                          cwd="/tmp")


def listeners(i: int) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP listener in node i's namespace."""
    out = in_node(i, "ss", "-ltnpH").stdout
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        for pid in re.findall(r"pid=(\d+)", line):
            found.append((host.strip("[]"), int(port), int(pid)))
    return found


def is_loopback(host: str) -> bool:
    return host.startswith("127.") or host == "::1"


def process_info(pid: int) -> tuple[str, str, str]:
    with contextlib.suppress(psutil.Error):
        p = psutil.Process(pid)
        return p.username(), p.name(), " ".join(p.cmdline())
    return "", "", ""


def tls_without_certificate(address: str, ca_file: str) -> str:
    """Connect with a client that trusts the job's CA but has no certificate; what happens."""
    host, port = address.split("://")[1].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                ctx.wrap_socket(raw) as tls:
            tls.sendall(b"\x00" * 8)
            data = tls.recv(1)  # TLS 1.3: the server's refusal arrives after the handshake
            return "ACCEPTED" if data else "CLOSED"
    except ssl.SSLError as e:
        return f"REFUSED {e.reason}"
    except OSError as e:
        return f"REFUSED {type(e).__name__}"


def test_two_node_spawn_through_the_hub(job):
    text = " | ".join(job["messages"])
    assert "8 cores on 2 nodes" in text, text
    assert "Jupyter server started on port" in text, text
    used = job_nodes(job["job_id"])
    assert len(used) == 2, used
    assert job["kernel_host"] == used[0]  # Jupyter (rank 0) runs on the job's first node


def test_bare_client_computes_on_workers_of_two_hosts(job):
    assert job["sum"] == 3
    assert job["hostnames"] == sorted(job_nodes(job["job_id"])), job
    assert len(set(job["worker_ips"])) == 2, job
    scheduler_ip = job["scheduler"].split("://")[1].rsplit(":", 1)[0]
    # the scheduler shares the notebook's node and listens on its job address, over TLS
    assert job["scheduler"].startswith("tls://")
    assert scheduler_ip == nodes.node_ip(node_index(job["kernel_host"])), job


def test_every_listening_socket_is_tls_hub_auth_or_the_mpi_runtime(job):
    """Each listener of alice's processes on a non-loopback address is a Dask TLS endpoint
    that refuses a certificate-less client, Jupyter behind hub auth, or Open MPI's and
    Slurm's own (docs/security.md lists them). Worker HTTP endpoints are loopback only."""
    dask = {a.split("://")[1] for a in job["dask_addresses"]}
    seen, violations, mpi_ports = [], [], []
    for name in job_nodes(job["job_id"]):
        for host, port, pid in listeners(node_index(name)):
            user, comm, cmdline = process_info(pid)
            if user != USER or is_loopback(host):
                continue
            seen.append((name, host, port, comm))
            if f"{host}:{port}" in dask:
                continue
            if comm in MPI_RUNTIME or ("dask-mpi-lx" in cmdline and " launch " in cmdline):
                mpi_ports.append(port)  # Open MPI's runtime, or its TCP transport in a rank
            elif "jupyterhub-singleuser" in cmdline or "batchspawner-singleuser" in cmdline:
                url = f"http://{nodes.node_ip(node_index(name))}:{port}/user/{USER}/api/status"
                status = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                         "--max-time", "10", url], capture_output=True,
                                        text=True).stdout
                if status not in ("302", "403"):
                    violations.append((name, host, port, comm, f"HTTP {status} without a token"))
            else:
                violations.append((name, host, port, comm, cmdline[:80]))
    assert seen, "the job listens on the node addresses (scheduler, workers)"
    assert violations == [], "\n".join(map(str, violations))
    refusals = {a: tls_without_certificate(a, job["ca_file"]) for a in job["dask_addresses"]}
    assert all(r.startswith("REFUSED") for r in refusals.values()), refusals
    assert any("CERTIFICATE_REQUIRED" in r or "HANDSHAKE" in r.upper() for r in refusals.values()), \
        refusals


def _worker_http_ports(names: list[str]) -> list[tuple[int, int]]:
    """(node index, port) of the loopback HTTP endpoints of alice's worker processes."""
    found = []
    for name in names:
        node_listeners = listeners(node_index(name))
        # a port number that another socket also holds on the node's address (a Dask TLS
        # listener or the MPI runtime's, the same ephemeral number by chance) answers for
        # that socket, not for the worker's loopback endpoint: such a probe shows nothing
        on_node_address = {port for host, port, _ in node_listeners if not is_loopback(host)}
        for host, port, pid in node_listeners:
            user, comm, cmdline = process_info(pid)
            if user == USER and is_loopback(host) and "multiprocessing" in cmdline \
                    and port not in on_node_address:
                found.append((node_index(name), port))
    return found


def test_bob_on_another_node_reaches_nothing_of_alices(job):
    used = job_nodes(job["job_id"])
    notebook_node, other = node_index(used[0]), node_index(used[1])
    worker_on_other = next(a for a in job["dask_addresses"]
                           if nodes.node_ip(other) in a and a != job["scheduler"])
    http = _worker_http_ports(used)
    assert http, "alice's worker processes serve /health on loopback"
    script = f"""
import socket, urllib.request
from distributed import Client
from distributed.security import Security
targets = {{"scheduler": {job['scheduler'].split('://')[1]!r}, "worker": {worker_on_other.split('://')[1]!r}}}
for what, addr in targets.items():
    for label, kwargs in [("tcp", dict(address="tcp://" + addr,
                                       security=Security(require_encryption=False))),
                          ("tls-own-key", dict(address="tls://" + addr,
                                               security=Security.temporary()))]:
        try:
            with Client(timeout="5s", **kwargs) as c:
                print(what, label, "RAN", c.run_on_scheduler(lambda: __import__("os").getuid()))
        except (OSError, TimeoutError) as e:
            print(what, label, "REFUSED", type(e).__name__)
for node, port in {http!r}:
    ip = "{nodes.SUBNET}." + str(10 + node)
    try:
        with urllib.request.urlopen(f"http://{{ip}}:{{port}}/health", timeout=5) as r:
            print("http", node, port, "OPEN", r.status)
    except OSError as e:
        print("http", node, port, "CLOSED", type(e).__name__)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({job['dashboard_socket']!r}); print("dashboard-socket OPEN")
except OSError as e:
    print("dashboard-socket REFUSED", type(e).__name__)
"""
    result = in_node(other, VENV_PYTHON, "-c", script, user="bob")
    out = result.stdout + result.stderr
    assert "RAN" not in out and " OPEN" not in out, out
    for what in ("scheduler", "worker"):
        assert f"{what} tcp REFUSED" in out and f"{what} tls-own-key REFUSED" in out, out
    assert out.count("CLOSED ConnectionRefusedError") + out.count("CLOSED URLError") == len(http), out
    assert "dashboard-socket REFUSED PermissionError" in out, out
    assert notebook_node != other


def test_dask_tab_card_counts_the_workers_of_both_nodes(job, chromium, mstack):
    page = login(chromium, mstack, USER)
    try:
        page.goto(f"{mstack['hub_url']}/user/{USER}/lab")
        open_dask_tab(page)
        assert wait_card_workers(page, WORKERS) == WORKERS
        hosts = ", ".join(job_nodes(job["job_id"]))
        assert card_title(page) == f"MPI job {job['job_id']}: {WORKERS} workers on {hosts}"
        shot(page, "dask-tab-two-nodes")
    finally:
        page.close()


def _kernel_alive(hub: Hub) -> dict:
    return run_json_in_kernel(hub, USER, r'''
import json, socket, time
from distributed import Client
c = Client()
deadline = time.time() + 60
while len(c.scheduler_info()["workers"]) > NOTEBOOK_NODE_WORKERS and time.time() < deadline:
    time.sleep(0.5)
print("JSON " + json.dumps({
    "host": socket.gethostname(),
    "workers": sorted(w["name"] for w in c.scheduler_info()["workers"].values()),
    "sum": c.submit(sum, [2, 3]).result(timeout=30),
}))
c.close()
'''.replace("NOTEBOOK_NODE_WORKERS", str(OPTIONS["cores"] // OPTIONS["nodes"] - 2)), timeout=120)


def test_job_cluster_spans_nodes_from_outside_any_job(mhub: Hub, mstack):
    """MPIJobCluster from the host (a login node): its first job on one node, a joining
    job on another, one scheduler on the first node's address, over TLS."""
    mhub.stop(USER)  # the two-node server of the tests above holds two of the three nodes
    from tests.e2e.test_job_clusters import PROBE, STACK_INFO, as_user

    STACK_INFO.update(mstack)  # the launcher's prologue on PBS
    env_memory = "DASK_MPI_LX__JOBS__WORKER_MEMORY=512MiB"  # fits a simulated node
    argv = as_user("alice", sys.executable, "-c", PROBE, "lifecycle")
    argv.insert(argv.index("-i") + 1, env_memory)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd="/tmp")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("JSON ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    import json

    out = json.loads(line[5:])
    hosts = [tuple(j["hosts"]) for j in out["jobs_5"].values()]
    assert len(hosts) == 2 and hosts[0] != hosts[1], out["jobs_5"]  # two nodes
    assert re.fullmatch(r"tls://" + re.escape(nodes.SUBNET) + r"\.\d+:\d+", out["scheduler"]), out
    assert out["address"].startswith("mpi-lx://") and out["address"][9:] in out["repr_5"], out
    assert out["sum_5"] == 42 and len(out["workers_5"]) == 5
    assert out["queued_after_close"] == ["none"] and out["dir_after_close"] is False


@pytest.mark.slurm_only  # PBS: the job outlived node B by over 120 s (docs/multinode.md)
def test_losing_node_b_costs_its_workers_then_the_job_ends_cleanly(mhub: Hub, mstack):
    """Every process in node B's namespace killed (slurmd or pbs_mom included): the notebook
    on node A keeps running and the cluster drops B's workers at once; the job ends (Open
    MPI's mpirun leaves with its daemon on B; Slurm also declares B dead), the hub sees the
    server stop, and no process or file of alice's stays on any node (B's, once B is back
    and runs her next job)."""
    earlier = {p.name for p in Path("/tmp").glob("dask-mpi-lx-*")}
    spawn_two_nodes(mhub)
    job_id = jobs_of(USER)[0].split()[0]
    node_a, node_b = (node_index(n) for n in job_nodes(job_id))
    run_in_kernel(mhub, USER, "from distributed import Client; Client().wait_for_workers(6, timeout=90)")
    nodes.kill_namespace(nodes.netns(node_b), crash=True)
    try:
        after = _kernel_alive(mhub)
        per_node = OPTIONS["cores"] // OPTIONS["nodes"]
        assert after["host"] == f"n{node_a}" and after["sum"] == 5, after
        assert after["workers"] == [f"rank-{r}" for r in range(2, per_node)], after
        deadline = time.monotonic() + 120  # Slurm: SlurmdTimeout=30 in the stack's slurm.conf
        while mhub.server(USER) and time.monotonic() < deadline:
            time.sleep(1)
        assert mhub.server(USER) is None, "the hub noticed that the job ended"
        assert jobs_of(USER) == []
        leftovers = [p.name for p in Path("/tmp").glob("dask-mpi-lx-*")
                     if p.owner() == USER and p.name not in earlier]
        assert all(f"dask-mpi-lx-{job_id}-" in name for name in leftovers), leftovers
    finally:
        bring_up(STACK_NODES)  # node B's slurmd again
    # SIGKILLed ranks could not clean up: alice's next job on those nodes finds what the
    # lost job left there (its job id and owner are in the names) and removes it
    script = Path("/tmp/dask-mpi-lx-test-next-job.sh")
    script.write_text(f"#!/bin/bash\n{mstack.get('launcher_prologue', '')}\n"
                      f"mpirun -np 6 {Path(VENV_PYTHON).parent}/dask-mpi-lx launch -- true\n")
    script.chmod(0o755)
    try:
        argv = batch.current().blocking_argv([f"n{node_a}", f"n{node_b}"], 3, str(script))
        subprocess.run(["/usr/sbin/runuser", "-u", USER, "--", *argv], check=True,
                       timeout=180, capture_output=True, cwd="/tmp")
    finally:
        script.unlink()
    assert_nothing_left(USER)


@pytest.mark.slurm_only
def test_node_names_resolve_for_hub_slurm_and_mpi(mstack):
    for i in range(1, STACK_NODES + 1):
        assert socket.gethostbyname(nodes.node_name(i)) == nodes.node_ip(i)
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True).stdout
    assert sorted(out.split()[::2]) == [f"n{i}" for i in range(1, STACK_NODES + 1)], out


def test_down_removes_what_up_made_and_nothing_else(mstack):
    """`stack.py down` removes its namespaces, links and /etc/hosts lines, and leaves a
    namespace, a link and a hosts line that it did not make."""
    from tests.e2e.conftest import _stack

    subprocess.run(["ip", "netns", "add", "keep-me"], check=True)
    subprocess.run(["ip", "link", "add", "keep-me0", "type", "bridge"], check=True)
    hosts = Path("/etc/hosts").read_text()
    Path("/etc/hosts").write_text(hosts + "127.0.0.9 keep-me\n")
    try:
        assert _stack("down", timeout=180).returncode == 0
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        text = Path("/etc/hosts").read_text()
        assert nodes.PREFIX not in links and nodes.PREFIX not in spaces, (links, spaces)
        assert nodes.HOSTS_MARK not in text
        assert "keep-me0" in links and "keep-me" in spaces and "127.0.0.9 keep-me" in text
        if batch.current().name == "pbs":  # its daemons by PID, the moms' homes, pbs.conf
            left = [p.name() for p in psutil.process_iter() if p.name().startswith("pbs_")]
            assert left == [] and not Path("/etc/pbs.conf").exists(), left
            assert not list(Path("/var/spool").glob("pbs-n*")) and not list(
                Path("/etc").glob("pbs.n*.conf"))
    finally:
        subprocess.run(["ip", "netns", "del", "keep-me"])
        subprocess.run(["ip", "link", "del", "keep-me0"])
        Path("/etc/hosts").write_text(Path("/etc/hosts").read_text().replace("127.0.0.9 keep-me\n", ""))
        bring_up(STACK_NODES)  # as the other tests of this module expect it
