"""A batch script as users write it: `mpirun -np N python batch_script.py [raise]`."""

import sys

from distributed import Client

from dask_mpi_lx import MPICluster

with MPICluster() as cluster, Client(cluster) as client:
    n = len(client.scheduler_info()["workers"])
    total = client.submit(sum, range(10)).result()
    print(f"BATCH workers={n} total={total} mode={cluster.mode}", flush=True)
    if sys.argv[1:] == ["raise"]:
        raise RuntimeError("body failed on purpose")
print("BATCH after-with on the client rank only", flush=True)
