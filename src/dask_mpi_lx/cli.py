"""The `dask-mpi-lx` command; each option maps 1:1 onto a key of the `mpi-lx` config namespace."""

from __future__ import annotations

from typing import Any

import click

from . import config
from .exceptions import ConfigError

LAUNCH_EPILOG = """\b
Examples:
  mpirun -np 6 dask-mpi-lx launch -- batchspawner-singleuser jupyterhub-singleuser
  srun --mpi=pmix -n 6 dask-mpi-lx launch --nthreads 2 -- jupyter lab
Every option defaults to its key in the mpi-lx dask config (DASK_MPI_LX__<KEY> in the
environment); see `dask-mpi-lx config`.
"""


class LaunchCommand(click.Command):
    """A bad Dask option must not keep the notebook from starting: when a command follows
    `--`, an option error is shown (naming the option) and the command still runs, without
    a Dask cluster."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except click.UsageError as e:
            if "--" not in args or not args[args.index("--") + 1 :]:
                raise
            e.ctx = ctx
            click.echo(f"Error: {e.format_message()}", err=True)
            ctx.params = {"cmd": tuple(args[args.index("--") + 1 :]),
                          "_problem": e.format_message()}
            return []


#: What the commands that run Dask import (the `compute` extra), by module name.
COMPUTE_MODULES = ("mpi4py", "distributed", "cryptography", "psutil")


def require_compute(command: str) -> None:
    """One clear line, on every rank before MPI starts, when the `compute` extra is missing
    (`pip install dask-mpi-lx` alone installs the CLI without it)."""
    from importlib.util import find_spec

    missing = [name for name in COMPUTE_MODULES if find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"dask-mpi-lx {command} needs {', '.join(missing)}, which this Python lacks: "
            "install the compute extra, pip install 'dask-mpi-lx[compute]'")


def _option(flag: str, key: str, **kwargs: Any):
    default = config.DEFAULTS["mpi-lx"][key]
    shown = "config" if default is None else default
    return click.option(flag, key.replace("-", "_"), default=None, show_default=f"{shown}",
                        **kwargs)


@click.group()
@click.version_option(package_name="dask-mpi-lx")
def main() -> None:
    """Run a Dask cluster inside the MPI allocation of a JupyterHub (or batch) job."""


def _dask_options(f):
    """The `mpi-lx` settings flags, shared by `launch` and `serve`."""
    for option in reversed([
        _option("--nthreads", "nthreads", type=click.IntRange(min=1), help="Threads per worker."),
        _option("--memory-limit", "memory-limit", type=str,
             help='Memory per worker: "auto", bytes, "4GiB", or a fraction of the host.'),
        _option("--worker-class", "worker-class", type=str,
             help="distributed.Nanny (restarts dead workers) or distributed.Worker."),
        _option("--local-directory", "local-directory", type=click.Path(file_okay=False),
             help="Where workers spill (default: a job-private directory)."),
        _option("--interface", "interface", type=str, help="Network interface, e.g. ib0."),
        _option("--protocol", "protocol", type=click.Choice(config.PROTOCOLS),
             help="Comm protocol (default: tls)."),
        click.option("--tls/--no-tls", "tls", default=None, show_default="tls",
                  help="Per-job TLS keys (default). --no-tls lets anyone who reaches the "
                  "scheduler run code as you."),
        _option("--scheduler-port", "scheduler-port", type=click.IntRange(0, 65535),
             help="Scheduler port (0: any free port)."),
        click.option("--dashboard/--no-dashboard", "dashboard", default=None, show_default="dashboard",
                  help="Serve the scheduler's dashboard."),
        _option("--dashboard-address", "dashboard-address", type=str,
             help="host:port for the dashboard (default: 127.0.0.1:0 on rank 0's host)."),
        _option("--job-directory", "job-directory", type=click.Path(file_okay=False),
             help="Parent of the job-private directory (default: $TMPDIR or /tmp)."),
        click.option("--wait-for-workers/--no-wait-for-workers", "wait_for_workers", default=None,
                  show_default="wait-for-workers",
                  help="Start CMD once every worker is in, or at once (the cluster joins while CMD "
                  "starts; what a hub wants)."),
        _option("--scheduler-timeout", "scheduler-timeout", type=str,
             help="How long rank 0 waits for the scheduler (and workers) before going on."),
        _option("--shutdown-timeout", "shutdown-timeout", type=str,
             help="How long ranks get to stop before the job is aborted."),
        _option("--poll-interval", "poll-interval", type=str,
             help="How often idle ranks check for MPI messages."),
        _option("--mpi-init-timeout", "mpi-init-timeout", type=str,
             help="How long a rank waits for MPI to start before it leaves."),
        _option("--notebook-host-nice", "notebook-host-nice", type=click.IntRange(0, 19),
             help="Niceness added to the Dask ranks on the notebook's host (0: off)."),
    ]):
        f = option(f)
    return f


@main.command(cls=LaunchCommand, epilog=LAUNCH_EPILOG,
              context_settings={"help_option_names": ["-h", "--help"]})
@_dask_options
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def launch(cmd: tuple[str, ...], _problem: str | None = None, **options: Any) -> None:
    """Run CMD on rank 0 and a TLS-secured Dask scheduler and workers on the other ranks.

    Start it on every rank (mpirun -np N / srun -n N / mpiexec -n N). CMD gets
    DASK_SCHEDULER_ADDRESS and DASK_CONFIG (a job-private dask config), so a bare
    `Client()` connects. The exit code is CMD's.
    """
    require_compute("launch")
    from .launcher.launch import reexec_without_hub_secrets, run_launch

    reexec_without_hub_secrets()
    settings = None
    if _problem is None:
        try:
            settings = config.resolve(**options)
        except ConfigError as e:
            click.echo(f"Error: {e}", err=True)
            _problem = str(e)
    if _problem:
        _problem += " (the command starts without a Dask cluster)"
    run_launch(settings, list(cmd), _problem)


SERVE_EPILOG = """\b
Examples (what MPIJobCluster submits; rarely typed by hand):
  mpirun -np 8 dask-mpi-lx serve --cluster-dir ~/.dask-mpi-lx/clusters/abc123
  mpirun -np 4 dask-mpi-lx serve --cluster-dir ~/.dask-mpi-lx/clusters/abc123 --join
"""


@main.command(epilog=SERVE_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@_dask_options
@click.option("--cluster-dir", required=True, type=click.Path(file_okay=False),
              help="The cluster's private directory (0700): TLS keys in, scheduler address out.")
@click.option("--join", is_flag=True, default=False,
              help="Run workers only, for the scheduler whose address is in --cluster-dir.")
@click.option("--lease", default=None, show_default="mpi-lx.jobs.lease",
              help="End the job once no cluster object has been attached for this long.")
@click.option("--attach-grace", default=None, show_default="mpi-lx.jobs.attach-grace",
              help="End the job if no cluster object attached within this long of its start.")
@click.option("--join-timeout", default=None, show_default="mpi-lx.jobs.join-timeout",
              help="With --join: how long to wait for the scheduler's address.")
def serve(cluster_dir: str, join: bool, lease: str | None, attach_grace: str | None,
          join_timeout: str | None, **options: Any) -> None:
    """Run a Dask cluster as a whole MPI job, for a client outside it (MPIJobCluster).

    Start it on every rank. Rank 0 keeps the job, rank 1 runs the TLS scheduler and
    writes its address into --cluster-dir, every other rank runs a parkable worker. With
    --join every rank above 0 runs a worker for that scheduler instead. The job ends on
    scancel or walltime, when no cluster object has been attached for --lease (or none
    came within --attach-grace of the start), or (--join)
    when the scheduler closed its workers.
    """
    require_compute("serve")
    from .launcher.launch import run_serve
    from .launcher.serve import ServeOptions

    # a job cluster runs with its cluster directory's keys whatever the environment says:
    # Slurm jobs inherit the submitter's environment, DASK_MPI_LX__TLS=false included
    if options.get("tls") is False or options.get("protocol") not in (None, "tls"):
        raise click.ClickException("dask-mpi-lx serve always uses TLS with the keys in "
                                   "--cluster-dir: drop --no-tls / --protocol")
    options.update(tls=True, protocol="tls")
    try:
        settings = config.resolve(**options)
        serve_options = ServeOptions(
            cluster_dir=cluster_dir, join=join,
            lease=config.duration("jobs.lease", lease),
            attach_grace=config.duration("jobs.attach-grace", attach_grace),
            join_timeout=config.duration("jobs.join-timeout", join_timeout))
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    run_serve(settings, serve_options)


@main.command("config")
def show_config() -> None:
    """Print the resolved mpi-lx settings (flags and environment applied) as YAML."""
    import yaml

    try:
        settings = config.resolve()
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    click.echo(yaml.safe_dump({"mpi-lx": {k.replace("_", "-"): v
                                          for k, v in settings.as_dict().items()}},
                              sort_keys=False))


@main.command("env")
@click.option("--job-id", default=None, help="The batch job (default: $SLURM_JOB_ID or "
              "$PBS_JOBID if set, else your only running job on this host).")
@click.option("--job-directory", default=None, type=click.Path(file_okay=False),
              help="Parent of the job directories (default: mpi-lx.job-directory, else "
              "$TMPDIR or /tmp).")
@click.option("--format", "fmt", type=click.Choice(["sh", "json"]), default="sh",
              show_default=True, help="sh: export lines for eval; json: an object.")
def show_env(job_id: str | None, job_directory: str | None, fmt: str) -> None:
    """Print what a process needs to reach this host's running job cluster: for terminals,
    ssh sessions and kernels that did not inherit the Jupyter server's environment.

    \b
    Shell:   eval "$(dask-mpi-lx env)"
    Python:  os.environ.update(json.loads(subprocess.check_output(
                 ["dask-mpi-lx", "env", "--format", "json"])))
             dask.config.paths.append(os.environ["DASK_CONFIG"]); dask.config.refresh()
    """
    import json
    import os

    import yaml

    from .launcher.jobdir import CONFIG_FILE, find_job_directories, job_of_directory
    from .mpi.environ import job_id as current_job_id

    if job_id is None and any(os.environ.get(v) for v in ("SLURM_JOB_ID", "PBS_JOBID")):
        job_id = current_job_id()
    parent = job_directory or config.setting("job-directory")
    found = find_job_directories(parent, job_id)
    which = f"job {job_id}" if job_id else "job of yours"
    if not found:
        raise click.ClickException(f"no running Dask-MPI-LX {which} with a cluster on this host "
                                   f"(looked in {parent or 'the temporary directory'})")
    jobs = sorted({job_of_directory(p) for p in found})
    if len(jobs) > 1:
        raise click.ClickException(f"several running jobs on this host ({', '.join(jobs)}): "
                                   "choose one with --job-id")
    dask_dir = found[0] / "dask"
    with open(dask_dir / CONFIG_FILE) as f:
        address = (yaml.safe_load(f) or {}).get("scheduler-address")
    env = {"DASK_CONFIG": str(dask_dir), "DASK_SCHEDULER_ADDRESS": str(address)}
    if fmt == "json":
        click.echo(json.dumps(env))
    else:
        import shlex

        for name, value in env.items():
            click.echo(f"export {name}={shlex.quote(value)}")


@main.group("clusters")
def clusters() -> None:
    """Your job clusters (MPIJobCluster, the Dask tab's NEW), from any terminal or process:
    list them, scale one, close one."""


def _existing_cluster(cluster_id: str, directory: str | None) -> Any:
    """The running job cluster ``cluster_id``, attached (close() detaches)."""
    require_compute("clusters")
    from .exceptions import MPILXError
    from .jobs.cluster import MPIJobCluster

    try:
        return MPIJobCluster.from_name(cluster_id, directory=directory)
    except MPILXError as e:
        raise click.ClickException(str(e)) from None


_DIRECTORY = click.option("--directory", default=None, show_default="mpi-lx.jobs.directory",
                          type=click.Path(file_okay=False),
                          help="Where the clusters' directories are.")


@clusters.command("list")
@_DIRECTORY
def clusters_list(directory: str | None) -> None:
    """One line per job cluster: id, jobs and their states, workers, hosts, age. Directories
    of clusters that have ended are removed first."""
    require_compute("clusters")
    import asyncio

    from .exceptions import MPILXError
    from .jobs.listing import HEADER, list_clusters

    try:
        lines = asyncio.run(list_clusters(directory or config.setting("jobs.directory")))
    except MPILXError as e:
        raise click.ClickException(str(e)) from None
    click.echo(HEADER)
    for line in lines:
        click.echo(line.format())


@clusters.command("scale")
@click.argument("cluster_id")
@click.argument("workers", type=click.IntRange(min=0))
@_DIRECTORY
def clusters_scale(cluster_id: str, workers: int, directory: str | None) -> None:
    """Scale job cluster CLUSTER_ID to WORKERS workers (submitting or cancelling jobs)."""
    from .exceptions import MPILXError

    cluster = _existing_cluster(cluster_id, directory)
    try:
        cluster.scale(workers)
        click.echo(cluster.title)
    except MPILXError as e:
        raise click.ClickException(str(e)) from None
    finally:
        cluster.close()


@clusters.command("close")
@click.argument("cluster_id")
@_DIRECTORY
def clusters_close(cluster_id: str, directory: str | None) -> None:
    """End job cluster CLUSTER_ID: cancel its jobs and remove its directory (keys)."""
    cluster = _existing_cluster(cluster_id, directory)
    title = cluster.title
    cluster.shutdown()
    click.echo(f"closed {title}")
