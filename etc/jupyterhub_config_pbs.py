"""Example: an NCAR-style PBS Pro hub (Casper and Derecho queues) with Dask-MPI-LX.

This file was rendered and checked in the tests (tests/unit/test_hub_spawner.py renders the
PBS script); PBS itself could not be run here, see docs/admin-guide.md. The server's hub token
is exported in the script body (which qsub reads from stdin), not passed with ``#PBS -v``.
Complete per-machine profiles (modules, launchers, queues): etc/sites/casper/ and
etc/sites/derecho/.
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
# PBS Pro with Cray MPICH or Open MPI: mpiexec -n N (mpiprocs=N in the select statement).
# With MPICH any rank killed ends the whole job, notebook included; where the image has Open
# MPI, "mpirun" (run with --enable-recovery) keeps the notebook when a Dask rank dies.
c.DaskMPIPBSSpawner.dask_launcher = "mpiexec"
# Queues users may choose: on Casper the shared "casper" queue, on Derecho "main"/"develop".
c.DaskMPIPBSSpawner.dask_partitions = ["casper", "develop", "main"]
c.DaskMPIPBSSpawner.dask_max_cores = 256      # in all: the job's MPI ranks
c.DaskMPIPBSSpawner.dask_default_cores = 6
# Up to 2 nodes: the cores are spread evenly, one select chunk per node. Derecho's "main"
# gives whole 128-core nodes (ncpus=128 per chunk whatever the ranks); on Casper ranks share
# a 36-core node (ncpus = ranks per node x threads). E.g. 256 cores on 2 nodes in main:
#   #PBS -l select=2:ncpus=128:mpiprocs=128:mem=...GB   and   mpiexec -n 256 -ppn 128
c.DaskMPIPBSSpawner.dask_max_nodes = 2
c.DaskMPIPBSSpawner.dask_pbs_whole_node_ncpus = {"main": 128}
c.DaskMPIPBSSpawner.dask_cores_per_node = {"casper": 36, "develop": 128}
c.DaskMPIPBSSpawner.dask_max_threads = 4
c.DaskMPIPBSSpawner.dask_max_worker_memory = "10GiB"
c.DaskMPIPBSSpawner.dask_default_worker_memory = "4GiB"
c.DaskMPIPBSSpawner.dask_max_walltime = "12:00:00"
c.DaskMPIPBSSpawner.dask_default_walltime = "04:00:00"
# Project/account: PBS needs -A at NCAR. Users pick one of these in the form (#PBS -A <code>);
# dask_accounts_hook = callable(spawner) -> list gives each user their own list instead.
c.DaskMPIPBSSpawner.dask_accounts = ["NCAR0001"]   # your project codes
