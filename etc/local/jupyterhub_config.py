"""The local hub that `make demo` and the end-to-end tests run, on one node or on the
simulated nodes of etc/local/nodes.py (not for production: see etc/jupyterhub_config_slurm.py
and etc/jupyterhub_config_pbs.py for site examples)."""

import json
import os

VENV = os.environ["DASK_MPI_LX_VENV"]
HUB_DIR = os.environ["DASK_MPI_LX_HUB_DIR"]
NODES = int(os.environ.get("DASK_MPI_LX_NODES", "1"))
BATCH = os.environ.get("DASK_MPI_LX_BATCH", "slurm")  # slurm, or pbs (OpenPBS)
PBS_BIN = os.path.join(os.environ.get("DASK_MPI_LX_PBS_EXEC", "/opt/pbs"), "bin")
# how Open MPI finds its slots on this machine's PBS (etc/local/pbs.py: no `tm` here)
LAUNCHER_PROLOGUE = os.environ.get("DASK_MPI_LX_LAUNCHER_PROLOGUE", "")
with open(os.path.join(HUB_DIR, "secrets.json")) as f:
    SECRETS = json.load(f)

c = get_config()  # noqa: F821

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("DASK_MPI_LX_HUB_PORT", "8000"))
if NODES == 1:
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_connect_ip = "127.0.0.1"
    if BATCH == "pbs":  # PBS names this host by its bridge address (exec_host), not loopback
        c.Spawner.ip = os.environ["DASK_MPI_LX_BRIDGE_IP"]
else:  # the jobs run on n1..nK: they post their port to the hub's API on the bridge, and
    # the proxy reaches Jupyter on the node's address (its namespace has no other interface)
    c.JupyterHub.hub_ip = os.environ["DASK_MPI_LX_BRIDGE_IP"]
    c.JupyterHub.hub_connect_ip = os.environ["DASK_MPI_LX_BRIDGE_IP"]
    c.Spawner.ip = "0.0.0.0"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"
c.ConfigurableHTTPProxy.pid_file = os.path.join(HUB_DIR, "proxy.pid")
c.JupyterHub.pid_file = os.path.join(HUB_DIR, "jupyterhub.pid")
c.JupyterHub.db_url = "sqlite:///" + os.path.join(HUB_DIR, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(HUB_DIR, "cookie_secret")

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = SECRETS["user_password"]
c.Authenticator.allowed_users = {"alice", "bob"}
c.JupyterHub.services = [{"name": "dask-mpi-lx-tests", "api_token": SECRETS["api_token"]}]
c.JupyterHub.load_roles = [{
    "name": "dask-mpi-lx-tests", "services": ["dask-mpi-lx-tests"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users", "tokens"],
}]

# --- the part a site adds (compare etc/jupyterhub_config_slurm.py and _pbs.py)
SPAWNER = "DaskMPIPBSSpawner" if BATCH == "pbs" else "DaskMPISlurmSpawner"
c.JupyterHub.spawner_class = f"dask_mpi_lx_hooks.{SPAWNER}"
c.Spawner.cmd = [f"{VENV}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    "PATH": f"{VENV}/bin:" + (f"{PBS_BIN}:" if BATCH == "pbs" else "") + "/usr/local/bin:/usr/bin:/bin",
    # shorter than the 60s default so the e2e tests see the culler keep-alive act quickly
    "DASK_MPI_LX__KEEPALIVE__INTERVAL": "5s",
    # clusters launched from the Dask tab (NEW): jobs small enough for the simulated nodes
    "DASK_MPI_LX__JOBS__WORKER_MEMORY": "1GiB",
}
if BATCH == "pbs":
    c.Spawner.environment.update({
        "DASK_MPI_LX__JOBS__BATCH_SYSTEM": "pbs",
        "DASK_MPI_LX__JOBS__PROLOGUE": LAUNCHER_PROLOGUE,
    })

c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
spawner = getattr(c, SPAWNER)
spawner.exec_prefix = "/usr/sbin/runuser -u {username} --"
spawner.batchspawner_singleuser_cmd = f"{VENV}/bin/batchspawner-singleuser"
spawner.dask_mpi_lx_cmd = f"{VENV}/bin/dask-mpi-lx"
spawner.dask_launcher = os.environ.get("DASK_MPI_LX_LAUNCHER", "mpirun")
spawner.dask_max_cores = 8 if NODES == 1 else 4 * NODES
spawner.dask_max_nodes = NODES
spawner.dask_max_worker_memory = "4GiB"
spawner.dask_default_worker_memory = "1GiB"
spawner.dask_notebook_memory = "2GiB"
spawner.dask_partitions = ["workq"] if BATCH == "pbs" else ["debug"]
# a job's cluster may grow past its allocation by one extra job of its size
spawner.dask_burst_max_jobs = 1
spawner.startup_poll_interval = 0.5
if BATCH == "pbs":
    spawner.req_prologue = LAUNCHER_PROLOGUE
    # qsub, qstat and qdel come from the PATH above (batchspawner runs them with it)
# answer spawn requests at once (202) and let clients follow /progress, as the spawn page does
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
