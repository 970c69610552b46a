"""A batch script as users write it: `mpirun -np N python batch_script.py [raise|noexit]`."""

import sys

from distributed import Client

from dask_mpi_lx import MPICluster

if sys.argv[1:] == ["noexit"]:  # as dask_mpi.initialize(exit=False): every rank goes on
    cluster = MPICluster(exit=False)
    if cluster.rank == 0:
        with cluster, Client(cluster) as client:
            assert client.submit(sum, [1, 2]).result() == 3
    print(f"BATCH rank {cluster.rank} goes on", flush=True)
    sys.exit(0)

with MPICluster() as cluster, Client(cluster) as client:
    n = len(client.scheduler_info()["workers"])
    total = client.submit(sum, range(10)).result()
    print(f"BATCH workers={n} total={total} mode={cluster.mode}", flush=True)
    if sys.argv[1:] == ["raise"]:
        raise RuntimeError("body failed on purpose")
print("BATCH after-with on the client rank only", flush=True)
