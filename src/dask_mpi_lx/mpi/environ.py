"""Pure helpers for the environment that MPI launchers, batch systems and JupyterHub set."""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Prefixes of variables that tie a process to an MPI job (Open MPI 4/5, PMIx, MPICH/Hydra,
#: Intel MPI, HPE Cray PALS, PSM). A child that keeps them joins, or breaks, the parent's
#: MPI job.
MPI_PREFIXES = (
    "OMPI_", "PMIX_", "OPAL_", "ORTE_", "PRTE_",
    "PMI_", "HYDI_", "HYDRA_", "MPIR_", "MPICH_", "I_MPI_", "PALS_",
    "MPI_LOCALNRANKS", "MPI_LOCALRANKID", "HFI_", "IPATH_",
)  # fmt: skip

#: Slurm variables that describe one task of a job step (mpirun/srun set them per rank);
#: the job-level ones (SLURM_JOB_ID, SLURM_NTASKS...) stay so `srun` works from a kernel.
SLURM_TASK_PREFIXES = ("SLURM_STEP_", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_TASK_PID",
                       "SLURM_GTIDS", "SLURM_NODEID", "SLURM_CPU_BIND", "SLURM_LAUNCH_NODE_IPADDR",
                       "SLURM_SRUN_COMM_", "SLURM_PMIXP_")  # fmt: skip

#: JupyterHub credentials handed to the single-user server: only rank 0's child may keep them.
HUB_SECRET_PREFIXES = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_OAUTH_",
                       "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_SSL_", "JPY_")  # fmt: skip

#: Where each launcher puts the rank and the world size, checked in order.
RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "PALS_RANKID", "SLURM_PROCID",
             "PMI_ID")


def without_prefixes(env: Mapping[str, str], prefixes: tuple[str, ...]) -> dict[str, str]:
    """A copy of ``env`` without the variables whose names start with any of ``prefixes``."""
    return {k: v for k, v in env.items() if not k.startswith(prefixes)}


def scrub_mpi(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without MPI/PMIx variables and Slurm task variables: a child started with it
    is a clean MPI singleton, and not mistaken for a rank of a job step."""
    return without_prefixes(env, MPI_PREFIXES + SLURM_TASK_PREFIXES)


def scrub_hub_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without JupyterHub tokens and OAuth settings."""
    return without_prefixes(env, HUB_SECRET_PREFIXES)


def has_hub_secrets(env: Mapping[str, str]) -> bool:
    return any(k.startswith(HUB_SECRET_PREFIXES) for k in env)


def _first_int(env: Mapping[str, str], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def rank_from_env(env: Mapping[str, str] | None = None) -> int | None:
    """This process's rank as the launcher announced it, before MPI_Init; None if unknown."""
    return _first_int(os.environ if env is None else env, RANK_VARS)


def mpi_world_size(env: Mapping[str, str] | None = None) -> int | None:
    """The world size if this process is a rank started by an MPI launcher, else None.

    Only launcher-set variables count (Open MPI, Hydra's PMI, srun's PMIx step); a process
    that merely runs inside a Slurm job (SLURM_NTASKS) is not a rank.
    """
    env = os.environ if env is None else env
    if "OMPI_COMM_WORLD_SIZE" in env:
        return _first_int(env, ("OMPI_COMM_WORLD_SIZE",))
    if "PMI_SIZE" in env:
        return _first_int(env, ("PMI_SIZE",))
    if "PMIX_RANK" in env:
        return _first_int(env, ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"))
    return None


def job_id(env: Mapping[str, str] | None = None) -> str:
    """The batch job's id (Slurm, PBS, LSF), else ``local-<pid>`` of this process."""
    env = os.environ if env is None else env
    for name in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID"):
        if env.get(name):
            return env[name].split(".")[0]
    return f"local-{os.getpid()}"


def full_job_id(env: Mapping[str, str] | None = None) -> str:
    """The batch job's id as the batch system prints it (PBS: with its server,
    "123.casper-pbs"), else `job_id`."""
    env = os.environ if env is None else env
    for name in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID"):
        if env.get(name):
            return env[name]
    return job_id(env)


def scrub_process_environ(prefixes: tuple[str, ...] = MPI_PREFIXES,
                          wipe: tuple[str, ...] = ()) -> list[str]:
    """Remove matching variables from this process's environment, both ``os.environ`` and
    the C-level ``environ`` (which MPI libraries change with setenv behind Python's back,
    and which child processes inherit). Returns the names removed.

    Variables matching ``wipe`` are also overwritten in place (zeros): unsetenv only drops
    the pointer, and ``/proc/<pid>/environ`` goes on showing the process's initial block.
    Only for values nothing reads later (hub tokens), never MPI's own variables."""
    import ctypes

    names = {k for k in os.environ if k.startswith(prefixes)}
    to_wipe: list[tuple[int, int]] = []  # (address, length): wiped once no longer listed
    try:
        c_environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
        i = 0
        while c_environ[i]:
            entry = ctypes.string_at(c_environ[i])
            name = entry.split(b"=", 1)[0].decode(errors="replace")
            if name.startswith(prefixes):
                names.add(name)
                if name.startswith(wipe):
                    to_wipe.append((c_environ[i], len(entry)))
            i += 1
    except (OSError, ValueError, AttributeError):  # no C environ to read: os.environ only
        pass
    for name in names:
        os.environ.pop(name, None)
        os.unsetenv(name)
    for address, length in to_wipe:
        ctypes.memset(address, 0, length)
    return sorted(names)
