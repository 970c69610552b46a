"""Example: a Slurm site offering Dask-MPI-LX in the spawner options form.

Install on the hub:       pip install "dask-mpi-lx[hub]"
Install in the compute image (what jobs run): pip install "dask-mpi-lx[lab]"
    (with the site's MPI; mpi4py's wheel loads the system libmpi at run time)
Only the lines under "Dask-MPI-LX" are ours; the rest is ordinary batchspawner setup.
"""

c = get_config()  # noqa: F821

# --- ordinary hub settings (keep yours)
c.JupyterHub.bind_url = "https://jupyterhub.example.org"
c.Spawner.start_timeout = 300        # includes time in the queue
c.Spawner.http_timeout = 120
c.Spawner.default_url = "/lab"
# Jobs run on compute nodes: the hub's API must listen where they reach it (batchspawner has
# Jupyter listen on every interface of the job's first node, and routes the proxy there).
c.JupyterHub.hub_ip = "0.0.0.0"                       # or the hub's cluster-network address
c.JupyterHub.hub_connect_ip = "hub.cluster.example.org"  # how the compute nodes reach it

# --- Dask-MPI-LX
c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPISlurmSpawner"
# How jobs start their ranks: "mpirun" (Open MPI, slots from the allocation, run with
# --enable-recovery: a killed Dask rank costs one worker, not the user's notebook) or "srun"
# (srun --mpi=pmix -n N: Slurm ends the whole job step, notebook included, when any rank
# dies). Rank 0 runs Jupyter on the batch host, so the hub can reach it.
c.DaskMPISlurmSpawner.dask_launcher = "mpirun"
c.DaskMPISlurmSpawner.dask_mpi_lx_cmd = "/opt/conda/envs/jupyter/bin/dask-mpi-lx"
c.DaskMPISlurmSpawner.batchspawner_singleuser_cmd = "/opt/conda/envs/jupyter/bin/batchspawner-singleuser"
c.Spawner.cmd = ["/opt/conda/envs/jupyter/bin/jupyterhub-singleuser"]
# Limits of the options form (every user value is checked against them on the hub).
c.DaskMPISlurmSpawner.dask_partitions = ["interactive", "compute"]   # first = default
c.DaskMPISlurmSpawner.dask_max_cores = 144          # in all: the job's MPI ranks
c.DaskMPISlurmSpawner.dask_default_cores = 8
# Up to 4 nodes (the form then shows a Nodes field): the cores are spread evenly, e.g. 72 on
# 2 nodes is --nodes=2 --ntasks=72 --ntasks-per-node=36. Each node has 36 cores.
c.DaskMPISlurmSpawner.dask_max_nodes = 4
c.DaskMPISlurmSpawner.dask_cores_per_node = {"interactive": 36, "compute": 36}
c.DaskMPISlurmSpawner.dask_max_threads = 4
c.DaskMPISlurmSpawner.dask_max_worker_memory = "16GiB"
c.DaskMPISlurmSpawner.dask_default_worker_memory = "4GiB"
c.DaskMPISlurmSpawner.dask_max_walltime = "12:00:00"
# Memory the job asks for on top of the workers' (Jupyter, kernels, scheduler), on node 1;
# --mem is per node: the busiest node's workers (+ this on node 1).
c.DaskMPISlurmSpawner.dask_notebook_memory = "4GiB"
# Options passed on to `dask-mpi-lx launch` (see `dask-mpi-lx launch --help`).
c.DaskMPISlurmSpawner.dask_launch_args = ["--interface", "ib0"]
# The batch script template lives in the package (etc/batch/slurm.sh.j2 shows it);
# to change it, copy it and set:
# c.DaskMPISlurmSpawner.batch_script = open("/etc/jupyterhub/slurm.sh.j2").read()
