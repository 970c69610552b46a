"""End to end on the real stack: Slurm + JupyterHub + batchspawner + Open MPI.

One server for alice (5 cores: Jupyter, a scheduler, 3 workers) is spawned through the
REST API with user options and checked from the outside (hub, proxy, Dask tab API) and
from the inside (a kernel over the websocket); then it is stopped and nothing may remain.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e import batch
from tests.e2e.hub import (
    Browser,
    Hub,
    assert_nothing_left,
    error_text,
    jobs_of,
    run_json_in_kernel,
)

pytestmark = pytest.mark.e2e

USER = "alice"
OPTIONS = {"cores": 5, "threads": 1, "worker_memory": "1GiB", "walltime": "00:30:00"}
N_WORKERS = OPTIONS["cores"] - 2


def kernel_json(hub: Hub, code: str, timeout: float = 120) -> dict:
    return run_json_in_kernel(hub, USER, code, timeout)


@pytest.fixture(scope="module")
def server(hub: Hub) -> dict:
    hub.stop(USER)
    t0 = time.monotonic()
    response, messages = hub.spawn(USER, OPTIONS)
    assert response.status in (201, 202), response.body
    state = hub.server(USER)
    assert state and state["ready"], (state, messages)
    job = jobs_of(USER)
    return {"messages": messages, "seconds": time.monotonic() - t0, "jobs": job}


def test_server_ready_with_spawn_progress(server):
    text = " | ".join(server["messages"])
    assert "Submitted batch job ?" not in text
    assert "Submitted batch job" in text and "5 cores: Jupyter, a Dask scheduler and 3 workers" \
        in text, text
    assert "starting Jupyter and the Dask cluster" in text, text
    assert "Jupyter server started on port" in text, text
    assert len(server["jobs"]) == 1 and server["jobs"][0].endswith("RUNNING")


def test_kernel_sees_the_cluster_and_computes_over_tls(hub, server):
    facts = kernel_json(hub, r'''
import os, json
from distributed import Client
c = Client()
c.wait_for_workers(N_WORKERS, timeout=60)  # Jupyter starts at once; workers join meanwhile
info = c.scheduler_info()
print("JSON " + json.dumps({
  "address": os.environ.get("DASK_SCHEDULER_ADDRESS"),
  "mpi_vars": [k for k in os.environ if k.startswith(("OMPI_", "PMIX_", "PMI_", "SLURM_STEP"))],
  "workers": len(info["workers"]),
  "scheduler": c.scheduler.address,
  "sum": c.submit(sum, [1, 2]).result(),
  "encryption": __import__("dask").config.get("distributed.comm.require-encryption"),
  "worker_tokens": list(c.run(lambda: os.environ.get("JUPYTERHUB_API_TOKEN")).values()),
  "scheduler_token": c.run_on_scheduler(lambda: os.environ.get("JUPYTERHUB_API_TOKEN")),
  "kernel_has_token": bool(os.environ.get("JUPYTERHUB_API_TOKEN")),
}))
c.close()
'''.replace("N_WORKERS", str(N_WORKERS)))
    assert facts["address"].startswith("tls://127.0.0.1:")  # single-host job: loopback only
    assert facts["scheduler"] == facts["address"]
    assert facts["mpi_vars"] == []
    assert facts["workers"] == N_WORKERS
    assert facts["sum"] == 3 and facts["encryption"] is True
    assert facts["worker_tokens"] == [None] * N_WORKERS
    assert facts["scheduler_token"] is None
    assert facts["kernel_has_token"] is True


def test_dask_tab_api_lists_and_scales_the_job_cluster(hub, server):
    deadline = time.monotonic() + 60  # the workers join while Jupyter starts
    while True:
        r = hub.request("GET", f"/user/{USER}/dask/clusters")
        assert r.status == 200, r.body
        clusters = r.json()
        if (clusters and clusters[0]["workers"] == N_WORKERS) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(clusters) == 1
    card = clusters[0]
    assert card["name"].startswith("MPI job ") and card["name"].endswith(f": {N_WORKERS} workers")
    assert card["workers"] == N_WORKERS
    assert card["dashboard_link"] == f"/user/{USER}/proxy/dask-mpi-lx/dashboard/status"
    for n in (1, N_WORKERS, 2):
        r = hub.request("PATCH", f"/user/{USER}/dask/clusters/{card['id']}", {"workers": n})
        assert r.status == 200, r.body
        assert r.json()["workers"] == n
    # past the allocation: the local hub allows one burst job, and 9 workers need two
    r = hub.request("PATCH", f"/user/{USER}/dask/clusters/{card['id']}", {"workers": 9})
    assert r.status == 500 and "the site allows 1 (mpi-lx.burst.max-jobs)" in r.body, r.body
    r = hub.request("PATCH", f"/user/{USER}/dask/clusters/{card['id']}", {"workers": N_WORKERS})
    assert r.json()["workers"] == N_WORKERS


def test_dashboard_through_the_proxy_needs_the_users_hub_auth(hub, server):
    link = hub.request("GET", f"/user/{USER}/dask/clusters").json()[0]["dashboard_link"]
    ok = hub.request("GET", link)
    assert ok.status == 200 and "Dask" in ok.body
    anonymous = hub.request("GET", link, token=None)
    assert anonymous.status in (302, 403), anonymous.status
    if anonymous.status == 302:
        location = {k.lower(): v for k, v in anonymous.headers.items()}.get("location", "")
        assert "/hub/" in location, anonymous.headers
    # the dashboard's websocket (bokeh) too: jupyter-server-proxy before 4.1.1 let it through
    # without the user's login (CVE-2024-28179)
    ws_url = hub.url.replace("http", "ws", 1) + link.replace("/status", "/status/ws")
    assert websocket_upgrade(ws_url, hub.token) == 101
    assert websocket_upgrade(ws_url, None) in (302, 403)


def websocket_upgrade(url: str, token: str | None) -> int:
    """101 when the websocket opened, else the HTTP status that refused it."""
    import asyncio

    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    async def attempt() -> int:
        headers = {"Authorization": f"token {token}"} if token else {}
        try:
            ws = await websocket_connect(HTTPRequest(url, headers=headers,
                                                     follow_redirects=False))
        except HTTPClientError as e:
            return e.code
        ws.close()
        return 101

    return asyncio.run(attempt())


MPI_FROM_KERNEL = r'''
import json, os, subprocess, sys
path = os.path.join(os.path.expanduser("~"), NAME)
open(path, "w").write(SCRIPT)
p = subprocess.run(["mpirun", "--oversubscribe", "-np", "4", sys.executable, path],
                   capture_output=True, text=True, timeout=150)
print("JSON " + json.dumps({"rc": p.returncode, "out": p.stdout, "err": p.stderr[-3000:]}))
'''


def mpirun_from_kernel(hub: Hub, name: str, script: str) -> dict:
    """From a kernel in the spawned job, write ``script`` to the user's home and run it with
    `mpirun -np 4` (in the job's allocation); returns its exit code and output."""
    code = MPI_FROM_KERNEL.replace("NAME", repr(name)).replace("SCRIPT", repr(script))
    return kernel_json(hub, code, timeout=200)


def test_dask_mpi_initialize_inside_the_spawned_job(hub, server):
    """The project card's proof: upstream dask_mpi.initialize in a JupyterHub-spawned job."""
    facts = mpirun_from_kernel(hub, "dask_mpi_initialize_check.py", """
from dask_mpi import initialize
initialize(nthreads=1, dashboard=False)
from distributed import Client
with Client() as c:
    c.wait_for_workers(2, timeout=60)  # initialize() returns before its workers connect
    print("INIT", len(c.scheduler_info()["workers"]), c.submit(sum, [2, 3]).result(), flush=True)
""")
    assert facts["rc"] == 0, facts["err"]
    assert "INIT 2 5" in facts["out"], facts


def test_mpicluster_batch_mode_inside_the_spawned_job(hub, server):
    facts = mpirun_from_kernel(hub, "mpicluster_batch_check.py", """
from distributed import Client
from dask_mpi_lx import MPICluster
with MPICluster() as cluster, Client(cluster) as c:
    n = len(c.scheduler_info()["workers"])
    print("BATCH", cluster.mode, n, c.submit(sum, [2, 3]).result(), flush=True)
""")
    assert facts["rc"] == 0, facts["err"]
    assert "BATCH batch 2 5" in facts["out"], facts


MARKER = Path("/tmp") / f"dask-mpi-lx-forged-{int(time.time())}"


def test_a_process_without_jupyters_environment_finds_the_cluster(hub, server):
    """A site kernel that resets its environment, a terminal or an ssh session on the node:
    `dask-mpi-lx env` finds the job's cluster, and a bare `Client()` then computes."""
    facts = kernel_json(hub, r'''
import json, os, subprocess, sys
bare = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}  # no DASK_*, no SLURM_*
found = subprocess.run([os.path.join(os.path.dirname(sys.executable), "dask-mpi-lx"), "env",
                        "--format", "json"], env=bare, capture_output=True, text=True)
env = json.loads(found.stdout)
code = "from distributed import Client; print(Client().submit(sum, [1, 2]).result())"
ran = subprocess.run([sys.executable, "-c", code], env={**bare, **env}, capture_output=True,
                     text=True, timeout=120)
print("JSON " + json.dumps({"env": env, "address": os.environ["DASK_SCHEDULER_ADDRESS"],
                            "out": ran.stdout.strip(), "err": ran.stderr[-800:]}))
''')
    assert facts["env"]["DASK_SCHEDULER_ADDRESS"] == facts["address"], facts
    assert facts["out"] == "3", facts


def test_forged_port_api_request_is_refused(hub, server):
    marker = MARKER
    token = kernel_json(hub, 'import os, json; print("JSON " + json.dumps('
                             'os.environ["JUPYTERHUB_API_TOKEN"]))')
    forged = {"port": 1234,
              "exec_prefix": f"id > {marker}; /usr/sbin/runuser -u {{username}} --",
              "batch_cancel_cmd": f"id > {marker}"}
    r = hub.request("POST", "/hub/api/batchspawner", forged, token=token)
    assert r.status == 400 and "only" in r.body
    r = hub.request("POST", "/hub/api/batchspawner", {"port": "1"}, token=token)
    assert r.status == 400
    assert hub.server(USER)["ready"]


def test_stop_ends_the_job_and_leaves_nothing(hub, server):
    """Runs after the forged request: stopping runs the spawner's exec_prefix and
    batch_cancel_cmd, so a spawner changed by that request would write the marker."""
    assert hub.server(USER)["ready"]
    hub.stop(USER)
    assert hub.server(USER) is None
    assert not MARKER.exists()
    assert_nothing_left(USER)


@pytest.mark.parametrize("options,message", [
    ({"cores": -1}, "expected a whole number from 3 to 8"),
    ({"cores": 0}, "expected a whole number from 3 to 8"),
    ({"cores": 100000}, "expected a whole number from 3 to 8"),
    ({"cores": "four"}, "expected a whole number from 3 to 8"),
    ({"cores": "6; touch /tmp/pwned"}, "expected a whole number"),
    ({"worker_memory": "$(id)"}, "expected a size like 4GiB"),
    ({"walltime": "99:00:00"}, "expected 00:01:00 to 12:00:00"),
    ({"partition": "debug && id"}, "choose one of {queue}"),
    ({"exec_prefix": "id"}, "unknown option(s) 'exec_prefix'"),
])
def test_bad_rest_options_are_refused_and_submit_nothing(hub, options, message):
    r = hub.request("POST", "/hub/api/users/bob/server", options)
    assert r.status == 400, r.body
    assert message.format(queue=batch.current().queue) in r.json()["message"]
    assert jobs_of("bob") == []
    assert hub.server("bob") is None


@pytest.mark.parametrize("fields,message", [
    ({"dask": "on", "cores": "-2"}, "Cores (MPI ranks): got '-2'; expected a whole number from 3 to 8"),
    ({"dask": "on", "cores": "4", "worker_memory": "4G; rm -rf ~"}, "Memory per worker"),
    ({"dask": "on", "cores": "4", "walltime": "tomorrow"}, "expected HH:MM:SS"),
])
def test_bad_form_values_show_on_the_spawn_page(stack, fields, message):
    browser = Browser(stack["hub_url"])
    r = browser.login("bob", stack["user_password"])
    assert r.status == 200, r.status
    page = browser.get("/hub/spawn")
    assert 'id="dask-mpi-lx-form"' in page.body
    r = browser.post_form("/hub/spawn", fields)
    assert r.status == 400
    assert message in error_text(r.body).replace("&#39;", "'")
    assert jobs_of("bob") == []
