"""The local hub that `make demo` and the end-to-end tests run, on one node or on the
simulated nodes of etc/local/nodes.py (not for production: see etc/jupyterhub_config_slurm.py
and etc/jupyterhub_config_pbs.py for site examples)."""

import json
import os

VENV = os.environ["DASK_MPI_LX_VENV"]
HUB_DIR = os.environ["DASK_MPI_LX_HUB_DIR"]
NODES = int(os.environ.get("DASK_MPI_LX_NODES", "1"))
with open(os.path.join(HUB_DIR, "secrets.json")) as f:
    SECRETS = json.load(f)

c = get_config()  # noqa: F821

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("DASK_MPI_LX_HUB_PORT", "8000"))
if NODES == 1:
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_connect_ip = "127.0.0.1"
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

# --- the part a site adds (compare etc/jupyterhub_config_slurm.py)
c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPISlurmSpawner"
c.Spawner.cmd = [f"{VENV}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    "PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
    # shorter than the 60s default so the e2e tests see the culler keep-alive act quickly
    "DASK_MPI_LX__KEEPALIVE__INTERVAL": "5s",
    # clusters launched from the Dask tab (NEW): jobs small enough for the simulated nodes
    "DASK_MPI_LX__JOBS__WORKER_MEMORY": "1GiB",
}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
c.DaskMPISlurmSpawner.exec_prefix = "/usr/sbin/runuser -u {username} --"
c.DaskMPISlurmSpawner.batchspawner_singleuser_cmd = f"{VENV}/bin/batchspawner-singleuser"
c.DaskMPISlurmSpawner.dask_mpi_lx_cmd = f"{VENV}/bin/dask-mpi-lx"
c.DaskMPISlurmSpawner.dask_launcher = os.environ.get("DASK_MPI_LX_LAUNCHER", "mpirun")
c.DaskMPISlurmSpawner.dask_max_cores = 8 if NODES == 1 else 4 * NODES
c.DaskMPISlurmSpawner.dask_max_nodes = NODES
c.DaskMPISlurmSpawner.dask_max_worker_memory = "4GiB"
c.DaskMPISlurmSpawner.dask_default_worker_memory = "1GiB"
c.DaskMPISlurmSpawner.dask_notebook_memory = "2GiB"
c.DaskMPISlurmSpawner.dask_partitions = ["debug"]
# a job's cluster may grow past its allocation by one extra job of its size
c.DaskMPISlurmSpawner.dask_burst_max_jobs = 1
c.DaskMPISlurmSpawner.startup_poll_interval = 0.5
# answer spawn requests at once (202) and let clients follow /progress, as the spawn page does
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
