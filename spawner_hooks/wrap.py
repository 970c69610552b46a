"""Pure: the command line that starts the job's MPI ranks around the single-user command."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from .options import DaskOptions

LAUNCHERS = {
    # Open MPI: slots come from the Slurm/PBS allocation. --enable-recovery keeps the job (and
    # the user's notebook) running when a Dask rank dies; without it any dead rank ends all.
    "mpirun": ["mpirun", "--enable-recovery", "-np"],
    # Slurm's PMIx plugin cancels the whole step when one task dies (no setting changes that)
    "srun": ["srun", "--mpi=pmix", "-n"],
    # MPICH/Hydra, PBS Pro's MPI: a rank killed by a signal ends the job
    "mpiexec": ["mpiexec", "-n"],
}


def launch_command(singleuser_cmd: str, opts: DaskOptions, launcher: str,
                   launcher_args: Sequence[str] = (), dask_mpi_lx: str = "dask-mpi-lx",
                   launch_args: Sequence[str] = ()) -> str:
    """``<launcher> -n N dask-mpi-lx launch --nthreads T --memory-limit M -- <singleuser>``.

    Every part but ``singleuser_cmd`` (built by batchspawner from the hub's own config) is
    quoted; user choices arrive here only as validated numbers.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
    argv = [*LAUNCHERS[launcher], str(opts.cores), *launcher_args, dask_mpi_lx, "launch",
            "--nthreads", str(opts.threads), "--memory-limit", str(opts.worker_memory),
            *launch_args, "--"]
    return " ".join(shlex.quote(a) for a in argv) + " " + singleuser_cmd
