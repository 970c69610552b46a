"""The MPI runtime that `dask-mpi-lx launch` and batch-mode `MPICluster` share: the
protocol between ranks, roles, rank 0's coordinator, the Dask ranks, the worker pool, keys."""
