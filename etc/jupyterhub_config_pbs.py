"""Example: a PBS Pro hub for one machine's queues (NCAR Derecho's) with Dask-MPI-LX.

This file was rendered and checked in the tests (tests/unit/test_hub_spawner.py renders the
PBS script); PBS itself could not be run here, see docs/admin-guide.md. The server's hub token
is exported in the script body (which qsub reads from stdin), not passed with ``#PBS -v``.
Complete per-machine profiles (modules, launchers, queues): etc/sites/casper/ and
etc/sites/derecho/. One spawner config serves one MPI: Casper's Open MPI `mpirun` has no -ppn
and Derecho's PALS `mpiexec` needs it, so a hub offering both machines gives each its own
profile (e.g. wrapspawner's ProfilesSpawner, docs/sites.md).
"""

c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPIPBSSpawner"
c.Spawner.start_timeout = 600        # PBS queues can be slow to start a job
c.Spawner.http_timeout = 120
c.Spawner.default_url = "/lab"
# Jobs run on compute nodes: the hub's API must listen where they reach it.
c.JupyterHub.hub_ip = "0.0.0.0"                         # or the hub's cluster-network address
c.JupyterHub.hub_connect_ip = "jupyterhub.hpc.example.org"  # how the compute nodes reach it

ENV = "/glade/u/apps/opt/jupyter/envs/dask-mpi-lx"   # the compute image's environment
c.Spawner.cmd = [f"{ENV}/bin/jupyterhub-singleuser"]
c.DaskMPIPBSSpawner.batchspawner_singleuser_cmd = f"{ENV}/bin/batchspawner-singleuser"
c.DaskMPIPBSSpawner.dask_mpi_lx_cmd = f"{ENV}/bin/dask-mpi-lx"
# Cray MPICH under HPE Cray PALS: `mpiexec -n N -ppn M` (with threads, `--cpu-bind depth -d T`).
# Any rank killed most likely ends the whole job, notebook included, as under MPICH's Hydra.
c.DaskMPIPBSSpawner.dask_launcher = "pals"
# Queues users may choose, with the server's name (queue@server: NCAR's peer scheduling), and
# each queue's limits from NCAR's docs/pbs/charging.md (NCAR/HPC-Docs): main 12 hours on whole
# 128-core nodes, develop 6 hours on shared ones; 235 GB per node for jobs.
MAIN, DEVELOP = "main@desched1", "develop@desched1"
c.DaskMPIPBSSpawner.dask_partitions = [MAIN, DEVELOP]
c.DaskMPIPBSSpawner.dask_max_cores = 256      # in all: the job's MPI ranks
c.DaskMPIPBSSpawner.dask_default_cores = 6
# Up to 2 nodes: the cores are spread evenly, one select chunk per node. main gives whole nodes
# (ncpus=128 per chunk whatever the ranks); develop shares them (ncpus = ranks per node x
# threads). E.g. 256 cores on 2 nodes in main:
#   #PBS -l select=2:ncpus=128:mpiprocs=128:ompthreads=1:mem=...GB
#   mpiexec -n 256 -ppn 128 ...
c.DaskMPIPBSSpawner.dask_max_nodes = 2
c.DaskMPIPBSSpawner.dask_pbs_whole_node_ncpus = {MAIN: 128}
c.DaskMPIPBSSpawner.dask_cores_per_node = {DEVELOP: 128}
c.DaskMPIPBSSpawner.dask_memory_per_node = {MAIN: "235GiB", DEVELOP: "235GiB"}
c.DaskMPIPBSSpawner.dask_queue_max_walltime = {MAIN: "12:00:00", DEVELOP: "06:00:00"}
c.DaskMPIPBSSpawner.dask_max_threads = 4
c.DaskMPIPBSSpawner.dask_max_worker_memory = "10GiB"
c.DaskMPIPBSSpawner.dask_default_worker_memory = "4GiB"
c.DaskMPIPBSSpawner.dask_max_walltime = "12:00:00"
c.DaskMPIPBSSpawner.dask_default_walltime = "04:00:00"
# #PBS -l job_priority=: the first is the default
c.DaskMPIPBSSpawner.dask_pbs_job_priorities = ["regular", "economy", "premium"]
# Project/account: PBS needs -A at NCAR. Users pick one of these in the form (#PBS -A <code>);
# dask_accounts_hook = callable(spawner) -> list gives each user their own list instead.
c.DaskMPIPBSSpawner.dask_accounts = ["NCAR0001"]   # your project codes
