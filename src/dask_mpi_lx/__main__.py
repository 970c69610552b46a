"""`python -m dask_mpi_lx` is the `dask-mpi-lx` command."""

from .cli import main

main()
