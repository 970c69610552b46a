"""Faults on the real stack (Slurm + JupyterHub + batchspawner + mpirun from the spawner):
a killed worker rank, a long silent computation against the idle culler, and the walltime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime

import pytest

from dask_mpi_lx.runtime.scratch import sweep_leftovers
from tests import mpirun
from tests.e2e.hub import Hub, assert_nothing_left, jobs_of, run_json_in_kernel
from tests.mpi.test_faults import NOTEBOOK, assert_all_gone

pytestmark = pytest.mark.e2e

USER = "alice"
KEEPALIVE = 5.0  # DASK_MPI_LX__KEEPALIVE__INTERVAL in etc/local/jupyterhub_config.py


@pytest.fixture
def alice(hub: Hub):
    hub.stop(USER)
    response, messages = hub.spawn(USER, {"cores": 5, "walltime": "00:30:00"})
    assert response.status in (201, 202), response.body
    assert hub.server(USER)["ready"], messages
    yield hub
    hub.stop(USER)
    assert_nothing_left(USER)


def test_killed_worker_rank_keeps_the_notebook_and_its_state(alice: Hub):
    """SIGKILL of a whole worker rank (what the OOM killer may pick): the kernel keeps its
    variables, the cluster goes on with one worker fewer, the server stays up."""
    facts = run_json_in_kernel(alice, USER, r'''
import json, os, signal, time
from distributed import Client
state = {"answer": 41}
c = Client()
c.wait_for_workers(3, timeout=60)
workers = c.scheduler_info()["workers"]
victim = next(a for a, w in workers.items() if w["name"] == "rank-3")
rank_pid = next(iter(c.run(os.getpid, workers=[victim], nanny=True).values()))
os.kill(rank_pid, signal.SIGKILL)
deadline = time.time() + 30
while len(c.scheduler_info()["workers"]) > 2 and time.time() < deadline:
    time.sleep(0.2)
from dask_mpi_lx import MPICluster
cluster = MPICluster()  # what the Dask tab shows
deadline = time.time() + 15
while cluster.worker_ranks[3]["state"] != "lost" and time.time() < deadline:
    time.sleep(0.2)
print("JSON " + json.dumps({
    "answer": state["answer"] + 1,
    "workers": sorted(w["name"] for w in c.scheduler_info()["workers"].values()),
    "sum": c.submit(sum, [1, 2]).result(),
    "limit": cluster.limit,
}))
''')
    assert facts == {"answer": 42, "workers": ["rank-2", "rank-4"], "sum": 3, "limit": 2}
    assert alice.server(USER)["ready"]
    again = run_json_in_kernel(alice, USER, "import json\nprint('JSON ' + json.dumps(6 * 7))")
    assert again == 42  # a new kernel on the same server


def _server_last_activity(hub: Hub) -> datetime:
    status = hub.request("GET", f"/user/{USER}/api/status").json()  # does not count as activity
    return datetime.fromisoformat(status["last_activity"].replace("Z", "+00:00"))


def test_silent_computation_counts_as_activity_and_idle_does_not(alice: Hub):
    """An idle culler looks at last_activity: it must move while the cluster computes with no
    output at all, and stop moving once the cluster is idle (idle servers still get culled)."""
    seconds = 6 * KEEPALIVE
    run_json_in_kernel(alice, USER, f'''
import json, time
from distributed import Client, fire_and_forget
c = Client()
fire_and_forget(c.submit(time.sleep, {seconds}, pure=False))
while not c.processing() or not any(c.processing().values()):
    time.sleep(0.1)
print("JSON " + json.dumps("submitted"))
''')  # the kernel is deleted now: nothing of the user's is active but the cluster
    submitted = _server_last_activity(alice)
    time.sleep(seconds - KEEPALIVE)
    busy = _server_last_activity(alice)
    assert (busy - submitted).total_seconds() >= seconds - 3 * KEEPALIVE, (submitted, busy)
    time.sleep(2 * KEEPALIVE + 2)  # the task has ended; the keep-alive must go quiet
    idle_start = _server_last_activity(alice)
    time.sleep(3 * KEEPALIVE)
    assert _server_last_activity(alice) == idle_start


def test_jupyter_shut_down_ends_every_rank_and_the_job(alice: Hub):
    """Jupyter's own shutdown (what Lab's File > Shut Down calls where a site shows it): rank 0
    stops every Dask rank, the job ends, and the hub marks the server stopped."""
    response = alice.request("POST", f"/user/{USER}/api/shutdown")
    assert response.status in (200, 202, 204), response.body
    assert_nothing_left(USER)
    deadline = time.monotonic() + 60  # the hub polls the job every poll_interval
    while alice.server(USER) and time.monotonic() < deadline:
        time.sleep(1)
    assert alice.server(USER) is None


def test_walltime_ends_every_rank_and_the_hub_notices(hub: Hub):
    """Slurm's time limit (1 minute here) ends Jupyter, the kernels and every Dask rank
    within KillWait, removes the job's files, and the hub marks the server stopped."""
    hub.stop(USER)
    response, messages = hub.spawn(USER, {"cores": 4, "walltime": "00:01:00"})
    assert response.status in (201, 202), response.body
    assert hub.server(USER)["ready"], messages
    run_json_in_kernel(hub, USER, "import json\nfrom distributed import Client\n"
                       "Client().wait_for_workers(2, timeout=60)\nprint('JSON 1')")
    deadline = time.monotonic() + 180
    while jobs_of(USER) and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs_of(USER) == [], "the job outlived its walltime"
    assert_nothing_left(USER, timeout=10)
    deadline = time.monotonic() + 60  # the hub polls the job every poll_interval
    while hub.server(USER) and time.monotonic() < deadline:
        time.sleep(1)
    assert hub.server(USER) is None


@pytest.mark.slurm_only
def test_killed_rank_under_srun_ends_the_step_cleanly(stack, dask_mpi_lx_cmd, tmp_path):
    """Slurm's PMIx plugin cancels the whole step when a task dies, whatever srun's
    --kill-on-bad-exit/--no-kill say: documented; the step must end at once, no process
    left, and what the SIGKILLed ranks could not remove goes with the next job's sweep."""

    t0 = time.monotonic()
    result = subprocess.run(
        ["srun", "--mpi=pmix", "-n", "5", "--oversubscribe", "--kill-on-bad-exit=0",
         *dask_mpi_lx_cmd, "launch", "--job-directory", str(tmp_path), "--", sys.executable,
         "-c", NOTEBOOK],
        capture_output=True, text=True, timeout=120, env={**os.environ, "FAULT": "kill-worker-rank"})
    pids = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("PIDS "))[5:])
    assert result.returncode != 0, result.stdout + result.stderr
    assert "NOTEBOOK-ALIVE-AT-END" not in result.stdout
    assert "task 3: Killed" in result.stderr, result.stderr
    assert time.monotonic() - t0 < 60
    assert_all_gone(pids)
    sweep_leftovers(str(tmp_path))  # what the next job on this host does first
    assert list(tmp_path.glob("dask-mpi-lx-*")) == []


def _rank0_launcher(user: str) -> int | None:
    """The pid of the user's rank 0 (`dask-mpi-lx launch` with OMPI_COMM_WORLD_RANK=0)."""
    pids = subprocess.run(["pgrep", "-u", user, "-f", "dask-mpi-lx launch"], capture_output=True,
                          text=True).stdout.split()
    return mpirun.rank_process(0, (int(p) for p in pids))


def test_rank0_killed_before_jupyter_reports_fails_the_spawn_fast(hub: Hub):
    """Rank 0 dies before Jupyter posted its port: the hub must say the spawn failed (not
    wait out start_timeout), and no rank, kernel or file may stay behind."""
    hub.stop(USER)
    response = hub.request("POST", f"/hub/api/users/{USER}/server", {"cores": 4})
    assert response.status in (201, 202), response.body
    t0 = time.monotonic()
    pid = None
    while pid is None and time.monotonic() - t0 < 60:
        pid = _rank0_launcher(USER)
        time.sleep(0.05)
    assert pid, "rank 0 never appeared"
    os.kill(pid, 9)
    killed = time.monotonic()
    messages = hub.progress(USER, timeout=120)
    assert "ended before Jupyter started" in messages[-1], messages
    assert time.monotonic() - killed < 30, "the hub took too long to notice"
    assert hub.server(USER) is None
    assert_nothing_left(USER)
