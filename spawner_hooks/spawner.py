"""batchspawner spawners that run the user's Jupyter server with a Dask cluster beside it.

The mixin adds bounded options (form and REST), wraps batchspawner's command in
`dask-mpi-lx launch` under the site's MPI launcher, reports spawn progress, and installs
the port-only API handler.
"""

from __future__ import annotations

import asyncio
import math
from importlib.resources import files
from typing import Any

import batchspawner
from tornado import web
from traitlets import Bool, Float, HasTraits, Integer, List, Unicode, default

from . import form, port_api
from .options import DaskOptions, Limits, OptionError, from_form, parse_memory, parse_walltime, validate
from .wrap import LAUNCHERS, launch_command

port_api.install()


def template(name: str) -> str:
    """A batch script template shipped with this package (also linked from etc/batch/)."""
    return files(__package__).joinpath("templates", name).read_text()


class DaskMPISpawnerMixin(HasTraits):
    """Mix into a batchspawner spawner (see `DaskMPISlurmSpawner`, `DaskMPIPBSSpawner`)."""

    dask_max_cores = Integer(8, help="Most cores (MPI ranks) a user may ask for.").tag(config=True)
    dask_max_threads = Integer(4, help="Most threads per Dask worker.").tag(config=True)
    dask_max_worker_memory = Unicode("8GiB", help="Most memory per Dask worker.").tag(config=True)
    dask_max_walltime = Unicode("12:00:00", help="Longest walltime (HH:MM:SS).").tag(config=True)
    dask_partitions = List(Unicode(), ["debug"],
                           help="Queues/partitions users may pick; the first is the default."
                           ).tag(config=True)
    dask_default_cores = Integer(6, help="Cores preselected in the form.").tag(config=True)
    dask_default_threads = Integer(1, help="Threads per worker preselected.").tag(config=True)
    dask_default_worker_memory = Unicode("2GiB", help="Memory per worker preselected."
                                         ).tag(config=True)
    dask_default_walltime = Unicode("01:00:00", help="Walltime preselected.").tag(config=True)
    dask_default_enabled = Bool(True, help="Whether the Dask switch starts on.").tag(config=True)
    dask_notebook_memory = Unicode(
        "2GiB", help="Memory the job requests on top of the workers', for Jupyter, the kernels "
        "and the scheduler.").tag(config=True)
    dask_launcher = Unicode(
        "mpirun", help="How the job starts its ranks: " + ", ".join(LAUNCHERS) + "."
    ).tag(config=True)
    dask_launcher_args = List(Unicode(), help="Extra arguments for the MPI launcher, e.g. "
                              '["--mca", "btl", "^openib"].').tag(config=True)
    dask_mpi_lx_cmd = Unicode("dask-mpi-lx", help="Path of dask-mpi-lx in the compute image."
                              ).tag(config=True)
    dask_launch_args = List(Unicode(), help='Extra `dask-mpi-lx launch` options, e.g. '
                            '["--interface", "ib0"].').tag(config=True)
    dask_wait_for_workers = Bool(
        False, help="Start Jupyter only once every Dask worker is in. Off by default: Jupyter "
        "starts at once and the cluster joins while it starts (the Dask tab and Client() "
        "wait for the scheduler), so the user waits no longer than without Dask."
    ).tag(config=True)
    dask_job_check_interval = Float(
        3.0, help="While the hub waits for Jupyter's port, how often (seconds) it checks that "
        "the job still runs: a job that ended (rank 0 died, walltime, scancel) fails the spawn "
        "at once instead of after start_timeout.").tag(config=True)

    req_ntasks = Unicode("1", help="MPI ranks of the job (set from the user's choice).")
    req_ncpus = Unicode("1", help="Cores of the job: ranks x threads (set from the choice).")

    dask_options: DaskOptions | None = None

    def dask_limits(self) -> Limits:
        """The admin's limits as `Limits` (a bad admin value fails loudly, at spawn)."""
        return Limits(
            max_cores=self.dask_max_cores,
            max_threads=self.dask_max_threads,
            max_worker_memory=parse_memory("worker_memory", self.dask_max_worker_memory, 2**50),
            max_walltime=parse_walltime("walltime", self.dask_max_walltime, 10**7),
            partitions=tuple(self.dask_partitions) or ("",),
            default_cores=self.dask_default_cores,
            default_threads=self.dask_default_threads,
            default_worker_memory=parse_memory("worker_memory", self.dask_default_worker_memory,
                                               2**50),
            default_walltime=parse_walltime("walltime", self.dask_default_walltime, 10**7),
            default_dask=self.dask_default_enabled,
        )

    @default("options_form")
    def _dask_options_form(self) -> Any:
        # a callable, rendered on every visit: after an error it shows what was submitted
        return lambda spawner: form.render(spawner.dask_limits(),
                                           getattr(spawner, "_dask_last_form", None))

    @default("options_from_form")
    def _dask_options_from_form_default(self) -> Any:
        return self._dask_options_from_form

    def _dask_options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        try:
            options = from_form(formdata, self.dask_limits()).as_user_options()
        except OptionError as e:
            self._dask_last_form = {k: v for k, v in formdata.items() if k != "_xsrf"}
            raise web.HTTPError(400, str(e)) from None
        self._dask_last_form = None
        return options

    @default("apply_user_options")
    def _dask_apply_default(self) -> Any:
        return lambda spawner, user_options: spawner.apply_dask_options(user_options)

    def apply_dask_options(self, user_options: dict[str, Any]) -> None:
        """Validate (REST options arrive here unparsed) and set the job's request."""
        try:
            opts = validate(user_options, self.dask_limits())
        except OptionError as e:
            raise web.HTTPError(400, str(e)) from None
        self.dask_options = opts
        self.user_options = opts.as_user_options()
        notebook = parse_memory("worker_memory", self.dask_notebook_memory, 2**50)
        total = opts.worker_memory * opts.workers + notebook
        self.req_ntasks = str(opts.cores if opts.dask else 1)
        self.req_nprocs = str(opts.threads)
        self.req_ncpus = str(opts.threads * int(self.req_ntasks))
        self.req_runtime = opts.walltime_hms
        self.req_memory = self._memory_request(total)
        self.req_partition = opts.partition
        if opts.dask and self.dask_launcher == "srun":
            self.req_srun = ""

    def _memory_request(self, total: int) -> str:
        return f"{math.ceil(total / 2**20)}M"

    def cmd_formatted_for_batch(self) -> str:
        inner = super().cmd_formatted_for_batch()
        opts = self.dask_options
        if opts is None or not opts.dask:
            return inner
        wait = "--wait-for-workers" if self.dask_wait_for_workers else "--no-wait-for-workers"
        return launch_command(inner, opts, self.dask_launcher, self.dask_launcher_args,
                              self.dask_mpi_lx_cmd, [wait, *self.dask_launch_args])

    async def start(self) -> Any:
        """batchspawner's start, plus a check that the running job is still there while the
        port is awaited (batchspawner 1.3.0 waits out start_timeout for a dead job)."""
        starting = asyncio.ensure_future(super().start())
        try:
            while True:
                done, _ = await asyncio.wait({starting}, timeout=self.dask_job_check_interval)
                if done:
                    return starting.result()
                if self.job_id and not self.port and self.state_isrunning():
                    status = await self.query_job_status()
                    if status == batchspawner.JobStatus.NOTFOUND:
                        raise RuntimeError(
                            f"The batch job {self.job_id} ended before Jupyter started; the "
                            "job's log (dask-mpi-lx-*.log in your home directory) says why")
        finally:
            starting.cancel()

    async def progress(self) -> Any:
        opts = self.dask_options
        what = (f"{opts.cores} cores: Jupyter, a Dask scheduler and {opts.workers} workers"
                if opts and opts.dask else "Jupyter only (no Dask cluster)")
        yield {"progress": 5, "message": f"Submitting the batch job ({what})"}
        while not self.job_id:
            await asyncio.sleep(0.2)
        yield {"progress": 10, "message": f"Submitted batch job {self.job_id} ({what})"}
        while True:
            if self.state_isrunning():
                host = self.state_gethost() if self.job_status else "?"
                step = "starting Jupyter and the Dask cluster" if opts and opts.dask \
                    else "starting Jupyter"
                yield {"progress": 50, "message": f"Job running on {host}: {step}"}
                break
            if self.state_ispending():
                yield {"progress": 20, "message": "Queued: waiting for the batch system..."}
            await asyncio.sleep(1)
        while not self.port:
            await asyncio.sleep(0.5)
        yield {"progress": 90, "message": f"Jupyter server started on port {self.port}, "
                                          "connecting..."}


class DaskMPISlurmSpawner(DaskMPISpawnerMixin, batchspawner.SlurmSpawner):
    """SlurmSpawner whose job runs ``mpirun|srun -n N dask-mpi-lx launch -- <singleuser>``."""

    @default("batch_script")
    def _batch_script_default(self) -> str:
        return template("slurm.sh.j2")

    @default("req_srun")
    def _req_srun_default(self) -> str:
        return ""


class DaskMPIPBSSpawner(DaskMPISpawnerMixin, batchspawner.PBSSpawner):
    """PBSSpawner (PBS Pro, NCAR-style) with ``select=1:ncpus=..:mpiprocs=..``."""

    @default("batch_script")
    def _batch_script_default(self) -> str:
        return template("pbs.sh.j2")

    def _memory_request(self, total: int) -> str:
        return f"{math.ceil(total / 2**30)}GB"
