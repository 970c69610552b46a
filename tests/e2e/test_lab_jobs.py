"""Inside a notebook job spawned through the hub: the Dask tab's NEW launches a cluster of
MPI batch jobs (through dask-labextension's REST API), and the job's own cluster bursts
past its allocation with extra jobs (from a kernel), within the hub's limits."""

from __future__ import annotations

import subprocess
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


def test_new_in_the_dask_tab_launches_a_job_cluster_and_shutdown_cancels_it(hub, server):
    deadline = time.monotonic() + 60  # the job's own card appears once its workers joined
    while not ((before := cards(hub)) and before[0]["workers"] == LIMIT) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
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
