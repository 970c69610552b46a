"""Inside a notebook job spawned through the hub: the Dask tab's NEW launches a cluster of
MPI batch jobs (through dask-labextension's REST API), and the job's own cluster bursts
past its allocation with extra jobs (from a kernel), within the hub's limits."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.e2e import batch
from tests.e2e.hub import Hub, assert_nothing_left, run_json_in_kernel, spawned_server

pytestmark = pytest.mark.e2e

USER = "alice"
OPTIONS = {"cores": 4, "threads": 1, "worker_memory": "1GiB", "walltime": "00:30:00"}
LIMIT = OPTIONS["cores"] - 2
BLOCKERS: list[str] = []  # jobs that keep the queue full between two tests


@pytest.fixture(scope="module")
def server(hub: Hub) -> dict:
    yield from spawned_server(hub, USER, OPTIONS)


def cards(hub: Hub) -> list[dict]:
    r = hub.request("GET", f"/user/{USER}/dask/clusters")
    assert r.status == 200, r.body
    return r.json()


def wait_card(hub: Hub, card_id: str, ok, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        card = next((c for c in cards(hub) if c["id"] == card_id), None)
        if (card and ok(card)) or time.monotonic() > deadline:
            return card
        time.sleep(1)


def queued(name_prefix: str) -> list[str]:
    """alice's unfinished jobs whose name starts so: "<name> <id> <STATE>" each."""
    return [f"{j.name} {j.job_id} {j.state}" for j in batch.current().jobs(USER)
            if j.name.startswith(name_prefix)]


def own_card_listed(hub: Hub) -> list[dict]:
    """The cards once the job's own is listed with its workers (NEW before it would be
    handed the job's own cluster, the Dask tab's first)."""
    deadline = time.monotonic() + 60
    while not ((listed := cards(hub)) and listed[0]["workers"] == LIMIT) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    return listed


def test_new_in_the_dask_tab_launches_a_job_cluster_and_shutdown_cancels_it(hub, server):
    before = own_card_listed(hub)
    assert len(before) == 1 and before[0]["name"].startswith("MPI job ")  # the job's own
    r = hub.request("PUT", f"/user/{USER}/dask/clusters", timeout=120)
    assert r.status == 200, r.body
    new = r.json()
    assert new["id"] != before[0]["id"]
    card = wait_card(hub, new["id"], lambda c: c["workers"] == 2 and "running" in c["name"])
    assert card and card["workers"] == 2 and card["name"].startswith("MPI jobs "), card
    own = next(c for c in cards(hub) if c["id"] == before[0]["id"])
    assert own["workers"] == LIMIT  # the job's own card is untouched
    r = hub.request("PATCH", f"/user/{USER}/dask/clusters/{new['id']}", {"workers": 5},
                    timeout=120)
    assert r.status == 200, r.body
    card = wait_card(hub, new["id"], lambda c: c["workers"] == 5)
    assert card["workers"] == 5 and len(queued("dmlx-")) == 2, (card, queued("dmlx-"))
    r = hub.request("DELETE", f"/user/{USER}/dask/clusters/{new['id']}", timeout=120)
    assert r.status in (200, 204), r.body
    deadline = time.monotonic() + 60
    while queued("dmlx-") and time.monotonic() < deadline:
        time.sleep(1)
    assert queued("dmlx-") == []
    assert [c["id"] for c in cards(hub)] == [before[0]["id"]]


DIRECT = r'''
import asyncio, json, ssl, sys
host, port, keys = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if keys:  # alice: the cluster's key, from her cluster directory
    from dask_mpi_lx.runtime.cluster_dir import ClusterDir
    from dask_mpi_lx.runtime.dashboard_mtls import client_context
    ctx = client_context(ClusterDir(keys).load_tls(), keys)
else:  # bob: TLS, ready to accept any server, but no key of alice's
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
async def get():
    r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="dask-internal")
    w.write(b"GET /individual-plots.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return (await r.read()).decode(errors="replace")
try:
    answer = asyncio.run(get())
    print("ANSWER " + (answer.splitlines() or [""])[0] + (" plots" if "Task Stream" in answer else ""))
except (ssl.SSLError, OSError) as e:
    print("REFUSED " + repr(e))
'''


INSERTED = """import json
from dask.distributed import Client
client = Client("{address}")
print("JSON " + json.dumps({{"sum": client.submit(sum, [1, 2]).result()}}))
"""


def test_a_job_cluster_from_new_is_the_owners_alone(hub, server):
    """NEW's cluster: its dashboard through alice's server (200), not anonymous (302) nor
    bob's login (403); on the node, TLS that asks for the cluster's key: bob's direct
    connection is refused at the handshake, alice's with the key answers. The card's code
    (``Client("<scheduler_address>")``) computes in alice's kernel and in a process outside
    Jupyter; bob's gets a clear refusal."""
    from tests.e2e.test_hub import websocket_upgrade

    assert len(own_card_listed(hub)) == 1
    r = hub.request("PUT", f"/user/{USER}/dask/clusters", timeout=120)
    assert r.status == 200, r.body
    new = r.json()
    try:
        card = wait_card(hub, new["id"], lambda c: c["workers"] == 2 and c["dashboard_link"])
        link = card["dashboard_link"]
        cluster_id = card["name"].split()[2].rstrip(":")
        assert link == f"/user/{USER}/proxy/dask-mpi-lx/clusters/{cluster_id}/status", card
        owner = hub.request("GET", link)
        plots = hub.request("GET", link.replace("/status", "/individual-plots.json"))
        anonymous = hub.request("GET", link, token=None)
        bobs = hub.request("POST", "/hub/api/users/bob/tokens",
                           {"note": "e2e", "expires_in": 600}).json()["token"]
        as_bob = hub.request("GET", link, token=bobs)
        ws = websocket_upgrade(hub.url.replace("http", "ws", 1) + link + "/ws", hub.token)
        directory = f"/home/{USER}/.dask-mpi-lx/clusters/{cluster_id}"
        contact = subprocess.run(["cat", f"{directory}/scheduler.yaml"], capture_output=True,
                                 text=True).stdout
        host, port = next(line.split(": ", 1)[1] for line in contact.splitlines()
                          if line.startswith("dashboard:")).rsplit(":", 1)
        address = card["scheduler_address"]
        in_kernel = run_json_in_kernel(hub, USER, INSERTED.format(address=address))
        outside = {user: subprocess.run(
            ["/usr/sbin/runuser", "-u", user, "--", sys.executable, "-c",
             INSERTED.format(address=address)], capture_output=True, text=True, cwd="/tmp",
            timeout=120) for user in (USER, "bob")}
        direct = {user: subprocess.run(
            ["/usr/sbin/runuser", "-u", user, "--", sys.executable, "-c", DIRECT, host, port,
             directory if user == USER else ""], capture_output=True, text=True, cwd="/tmp",
            timeout=60) for user in (USER, "bob")}
    finally:
        hub.request("DELETE", f"/user/{USER}/dask/clusters/{new['id']}", timeout=120)
    assert owner.status == 200 and "Dask" in owner.body, (owner.status, owner.body[:300])
    assert plots.status == 200 and "Task Stream" in plots.body, plots.body[:300]
    location = {k.lower(): v for k, v in anonymous.headers.items()}.get("location", "")
    assert anonymous.status == 302 and "/hub/" in location, (anonymous.status, location)
    assert as_bob.status in (403, 404), as_bob.status
    assert ws == 101, ws
    assert address == f"mpi-lx://{cluster_id}", card
    assert in_kernel == {"sum": 3}, in_kernel
    assert 'JSON {"sum": 3}' in outside[USER].stdout, outside[USER]
    assert f"no job cluster {cluster_id} of yours" in outside["bob"].stderr, outside["bob"]
    assert "ANSWER HTTP/1.1 200 OK plots" in direct[USER].stdout, direct[USER]
    assert "REFUSED" in direct["bob"].stdout and "CERTIFICATE_REQUIRED" in direct["bob"].stdout, \
        direct["bob"]
    deadline = time.monotonic() + 60
    while queued("dmlx-") and time.monotonic() < deadline:
        time.sleep(1)
    assert queued("dmlx-") == []


BURST = r'''
import json, os, subprocess, time
from distributed import Client
from dask_mpi_lx import MPICluster
from dask_mpi_lx.exceptions import ScaleError
PBS = bool(os.environ.get("PBS_JOBID"))
PREFIX = "dmlx-burst-" + (os.environ.get("SLURM_JOB_ID") or os.environ["PBS_JOBID"]) + "-"
def burst_jobs():  # "<id> <STATE>" of this job's burst jobs, from the batch system itself
    if PBS:
        ids = subprocess.run(["qselect", "-u", os.environ["USER"]], capture_output=True,
                             text=True).stdout.split()
        states = {"Q": "PENDING", "R": "RUNNING", "E": "COMPLETING", "H": "PENDING"}
        found = []
        for i in ids:
            rec = json.loads(subprocess.run(["qstat", "-fx", "-F", "json", i], capture_output=True,
                                            text=True).stdout or "{}").get("Jobs", {})
            found += [f"{i} {states.get(r['job_state'], r['job_state'])}" for r in rec.values()
                      if r["job_state"] != "F" and r["Job_Name"].startswith(PREFIX)]
        return found
    out = subprocess.run(["squeue", "-h", "--me", "-o", "%j %i %T"], capture_output=True,
                         text=True).stdout
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(PREFIX)]
facts = {}
cluster = MPICluster()
client = Client(cluster)
limit = cluster.limit
facts["limit"] = limit
t = time.monotonic()
cluster.scale(limit + 1)
facts["scale_up_s"] = time.monotonic() - t
client.wait_for_workers(limit + 1, timeout=120)
facts["names"] = sorted(str(w["name"]) for w in cluster.scheduler_info["workers"].values())
facts["title_up"] = cluster.title
facts["sum"] = client.submit(sum, range(10)).result()
cluster.scale(limit)
deadline = time.monotonic() + 60
while (burst_jobs() or len(cluster.scheduler_info["workers"]) != limit) and time.monotonic() < deadline:
    time.sleep(1)
facts["after_down"] = burst_jobs()
facts["workers_down"] = len(cluster.scheduler_info["workers"])
try:
    cluster.scale(limit + 100)
    facts["too_many"] = "accepted"
except ScaleError as e:
    facts["too_many"] = str(e)
# a busy partition: the burst job queues, and the notebook goes on at once
free = FREE_CORES
if PBS:
    blocker = subprocess.run(["qsub", "-f", "-N", "dmlx-blocker", "-l", f"select=1:ncpus={free}",
                              "-j", "oe", "-o", "/dev/null", "--", "/bin/sleep", "300"],
                             capture_output=True, text=True).stdout.strip()
else:
    blocker = subprocess.run(["sbatch", "--parsable", "-n", str(free), "--job-name=dmlx-blocker",
                              "--output=/dev/null", "--wrap", "sleep 300"],
                             capture_output=True, text=True).stdout.strip()
time.sleep(3)
t = time.monotonic()
cluster.scale(limit + 1)
facts["pending_scale_s"] = time.monotonic() - t
facts["pending_jobs"] = burst_jobs()
facts["title_pending"] = cluster.title
facts["kernel_answers"] = client.submit(lambda: 7).result()
facts["blocker"] = blocker  # kept: the burst job stays pending for the next test
print("JSON " + json.dumps(facts))
'''


def test_burst_past_the_allocation_and_back(hub, server):
    code = BURST.replace("FREE_CORES", str(batch.current().free_cores()))
    facts = run_json_in_kernel(hub, USER, code, timeout=300)
    assert facts["limit"] == LIMIT
    burst_workers = [n for n in facts["names"] if n.startswith("job-")]
    # one worker more than the allocation: one extra job, only as big as that (2 ranks)
    assert len(burst_workers) == 1 and len(facts["names"]) == LIMIT + 1, facts["names"]
    assert facts["sum"] == 45 and "burst: job" in facts["title_up"], facts["title_up"]
    assert facts["after_down"] == [] and facts["workers_down"] == LIMIT  # burst jobs go first
    assert "the site allows 1" in facts["too_many"], facts["too_many"]
    assert facts["pending_scale_s"] < 15, facts
    assert len(facts["pending_jobs"]) == 1 and facts["pending_jobs"][0].endswith("PENDING")
    assert "pending" in facts["title_pending"] and facts["kernel_answers"] == 7
    BLOCKERS.append(facts["blocker"])


def test_the_notebook_jobs_end_cancels_its_burst_jobs(hub, server):
    name = f"dmlx-burst-{server['job']}-"  # the full id (PBS: with its server), a token
    burst = queued(name)
    # from the test before, and pending behind its blocker: it cannot end by itself
    assert len(burst) == 1 and burst[0].endswith("PENDING"), burst
    hub.stop(USER)
    deadline = time.monotonic() + 60
    while queued(name) and time.monotonic() < deadline:
        time.sleep(1)
    assert queued(name) == []
    # cancelled by the notebook job's end, not ended by itself once the scheduler went
    assert batch.current().final_state(burst[0].split()[1]) == "CANCELLED"
    for blocker in BLOCKERS:
        subprocess.run(batch.current().cancel_argv(blocker), capture_output=True)
    assert_nothing_left(USER)
