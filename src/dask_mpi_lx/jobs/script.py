"""Pure: the batch script of one `dask-mpi-lx serve` job, rendered from the same templates
as the hub's spawners (``dask_mpi_lx_hooks/templates``), or a site's own."""

from __future__ import annotations

import os
import shlex
import sys
from importlib.resources import files
from pathlib import Path

from dask_mpi_lx_hooks.wrap import launcher_argv  # pure: the hub's one launcher table

from .spec import JobSpec

TEMPLATES = {"slurm": "slurm.sh.j2", "pbs": "pbs.sh.j2"}


def dask_mpi_lx_command() -> str:
    """This installation's ``dask-mpi-lx`` (the job runs the same one), else the name."""
    beside = Path(sys.executable).with_name("dask-mpi-lx")
    return str(beside) if beside.exists() else "dask-mpi-lx"


def serve_command(spec: JobSpec, cluster_dir: str | os.PathLike, joining: bool,
                  program: str | None = None) -> str:
    """``<launcher> -n N [per node] dask-mpi-lx serve --cluster-dir D ...``, quoted."""
    argv = [*launcher_argv(spec.launcher, spec.cores, spec.nodes, spec.threads),
            *spec.launcher_args,
            program or dask_mpi_lx_command(), "serve", "--cluster-dir", str(cluster_dir),
            "--nthreads", str(spec.threads), "--memory-limit", str(spec.worker_memory)]
    if joining:
        argv.append("--join")
    return " ".join(shlex.quote(a) for a in argv)


def template_text(spec: JobSpec) -> str:
    if spec.template:
        return Path(os.path.expanduser(spec.template)).read_text()
    return files("dask_mpi_lx_hooks").joinpath("templates", TEMPLATES[spec.batch_system]).read_text()


def render(spec: JobSpec, command: str, home: str | None = None,
           keepvars: str = "ALL") -> str:
    """The job's batch script. ``keepvars``: what Slurm's --export / PBS's -v pass on."""
    from jinja2 import Template

    if spec.batch_system == "pbs" and keepvars == "ALL":
        keepvars = ""
    memory_mib = -(-spec.memory_per_node() // 2**20)
    memory = f"{-(-memory_mib // 1024)}GB" if spec.batch_system == "pbs" else f"{memory_mib}M"
    values = {
        "homedir": home or os.path.expanduser("~"),
        "keepvars": keepvars,
        "nodes": spec.nodes,
        "ntasks": spec.cores,
        "ntasks_per_node": spec.ranks_per_node,
        "ncpus_per_node": spec.ranks_per_node * spec.threads,
        "nprocs": spec.threads,
        "partition": spec.queue or "",
        "queue": spec.queue or "",
        "account": spec.account or "",
        "runtime": spec.walltime_hms,
        "memory": memory,
        # the templates put "#SBATCH "/"#PBS " before `options`: one directive per line
        "options": ("\n#SBATCH " if spec.batch_system == "slurm" else "\n#PBS ").join(
            spec.job_extra),
        "prologue": spec.prologue,
        "epilogue": "",
        "srun": "",
        "private_env": "",
        "cmd": command,
    }
    return Template(template_text(spec)).render(**values)
