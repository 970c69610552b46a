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
    # HPE Cray PALS' mpiexec (Cray MPICH, NCAR Derecho): it takes neither the ranks per node nor
    # the threads per rank from PBS, so it always gets -ppn, and --cpu-bind depth -d T with
    # threads (`launch_command`)
    "pals": ["mpiexec", "-n"],
}

#: With several nodes, the flag that puts the same number of ranks on each node. mpirun (Open
#: MPI) takes its slots per node from the allocation (--ntasks-per-node, mpiprocs) and fills
#: node 1 first and has no -ppn; srun would read SLURM_NTASKS_PER_NODE, but saying it costs
#: nothing; MPICH's Hydra takes -ppn. Ranks fill nodes in order, so ranks 0 (Jupyter) and 1 (the
#: scheduler) share node 1 either way. PALS gets -ppn on one node too (`ALWAYS_PER_NODE`).
PER_NODE = {"srun": "--ntasks-per-node", "mpiexec": "-ppn", "pals": "-ppn"}
#: Launchers that get the ranks per node on one node as well.
ALWAYS_PER_NODE = frozenset({"pals"})


def launcher_argv(launcher: str, cores: int, nodes: int, threads: int) -> list[str]:
    """``<launcher> -n N [ranks per node] [binding]``: how ``launcher`` starts ``cores`` ranks
    over ``nodes`` nodes with ``threads`` each. The one table for the hub's notebook jobs and
    for job clusters and burst jobs (`dask_mpi_lx.jobs.script`)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
    spread = nodes > 1 or launcher in ALWAYS_PER_NODE
    per_node = [PER_NODE[launcher], str(cores // nodes)] if spread and launcher in PER_NODE else []
    depth = ["--cpu-bind", "depth", "-d", str(threads)] if launcher == "pals" and threads > 1 else []
    return [*LAUNCHERS[launcher], str(cores), *per_node, *depth]


def launch_command(singleuser_cmd: str, opts: DaskOptions, launcher: str,
                   launcher_args: Sequence[str] = (), dask_mpi_lx: str = "dask-mpi-lx",
                   launch_args: Sequence[str] = ()) -> str:
    """``<launcher> -n N dask-mpi-lx launch --nthreads T --memory-limit M -- <singleuser>``.

    On several nodes srun and mpiexec also get the ranks per node (`PER_NODE`); pals gets
    them on one node too, and with several threads per worker ``--cpu-bind depth -d T`` (each
    rank bound to T cores). Every part but ``singleuser_cmd`` (built by batchspawner from the
    hub's own config) is quoted; user choices arrive here only as validated numbers.
    """
    argv = [*launcher_argv(launcher, opts.cores, opts.nodes, opts.threads), *launcher_args,
            dask_mpi_lx,
            "launch", "--nthreads", str(opts.threads), "--memory-limit", str(opts.worker_memory),
            *launch_args, "--"]
    return " ".join(shlex.quote(a) for a in argv) + " " + singleuser_cmd
