"""batchspawner spawners that run the user's Jupyter server with a Dask cluster beside it.

The mixin adds bounded options (form and REST), wraps batchspawner's command in
`dask-mpi-lx launch` under the site's MPI launcher, reports spawn progress, and installs
the port-only API handler.
"""

from __future__ import annotations

import asyncio
import math
import re
import shlex
from importlib.resources import files
from typing import Any

import batchspawner
from tornado import web
from traitlets import Bool, Callable, Dict, Float, HasTraits, Integer, List, TraitError, Unicode, default
from traitlets import validate as validate_trait

from . import form, port_api
from .options import (
    DaskOptions,
    Limits,
    OptionError,
    check_accounts,
    from_form,
    parse_memory,
    parse_walltime,
    validate,
)
from .wrap import LAUNCHERS, launch_command

port_api.install()

_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")  # a queue, or queue@server (PBS)
_PRIORITY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")  # a PBS job_priority value


def template(name: str) -> str:
    """A batch script template shipped with this package (also linked from etc/batch/)."""
    return files(__package__).joinpath("templates", name).read_text()


class DaskMPISpawnerMixin(HasTraits):
    """Mix into a batchspawner spawner (see `DaskMPISlurmSpawner`, `DaskMPIPBSSpawner`)."""

    dask_max_cores = Integer(
        8, help="Most cores (MPI ranks) a user may ask for, in all (over every node)."
    ).tag(config=True)
    dask_max_nodes = Integer(
        1, help="Most nodes a user may ask for. At 1 (the default) the form has no Nodes field "
        "and every job is one node. Above 1, the user's cores (the job's total MPI ranks) are "
        "spread evenly: cores must be a multiple of nodes, with at least 2 per node (ranks 0, "
        "Jupyter, and 1, the Dask scheduler, share the first node)."
    ).tag(config=True)
    dask_cores_per_node = Dict(
        value_trait=Integer(), key_trait=Unicode(),
        help="Partition/queue -> CPU cores of one of its nodes, e.g. {\"compute\": 36}. A job's "
        "ranks per node x threads per worker (what --ntasks-per-node x --cpus-per-task, or "
        "mpiprocs x threads, ask of each node) must fit. A partition not listed has no "
        "per-node bound beyond dask_max_cores."
    ).tag(config=True)
    dask_memory_per_node = Dict(
        value_trait=Unicode(), key_trait=Unicode(),
        help="Partition/queue -> memory one of its nodes offers a job, e.g. "
        "{\"develop\": \"235GiB\"}. The job's memory per node (dask_notebook_memory and the "
        "workers on node 1, the workers on every other node) must fit. A partition not listed "
        "has no per-node memory bound beyond dask_max_worker_memory."
    ).tag(config=True)
    dask_queue_max_walltime = Dict(
        value_trait=Unicode(), key_trait=Unicode(),
        help="Partition/queue -> its longest walltime (HH:MM:SS), e.g. {\"develop\": "
        "\"06:00:00\"}. A partition not listed allows dask_max_walltime."
    ).tag(config=True)
    dask_queue_max_nodes = Dict(
        value_trait=Integer(), key_trait=Unicode(),
        help="Partition/queue -> the most nodes a job there may ask for, e.g. {\"develop\": 1}. "
        "A partition not listed allows dask_max_nodes. The form has a Nodes field when any "
        "offered partition allows more than one."
    ).tag(config=True)
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

    dask_accounts = List(
        Unicode(), help="Project/account codes users may charge their job to; the first is the "
        "default. Empty (the default): the form has no project field and the job gets no -A / "
        "--account from it (batchspawner's req_account, if set, still applies)."
    ).tag(config=True)
    dask_accounts_hook = Callable(
        None, allow_none=True,
        help="callable(spawner) -> list of project codes for this user, replacing dask_accounts "
        "(e.g. read from the site's allocation database). Called each time the form is shown "
        "and the options are checked, so keep it quick; an empty list means no project field."
    ).tag(config=True)
    dask_ignored_options = List(
        Unicode(), help="user_options keys another layer owns and this spawner drops before "
        "checking the rest, e.g. [\"profile\"] under wrapspawner's ProfilesSpawner."
    ).tag(config=True)
    dask_burst_max_jobs = Integer(
        0, help="Most extra batch jobs a user's cluster may submit to grow past its own "
        "allocation (MPICluster.scale(n) above the job's ranks). 0 (the default): no bursting."
    ).tag(config=True)
    dask_burst_queue = Unicode(
        "", help="Queue/partition of the extra jobs; empty (the default): the job's own queue."
    ).tag(config=True)
    dask_burst_max_nodes = Integer(1, help="Nodes of each extra job.").tag(config=True)
    dask_job_log = Unicode(
        "~/dask-mpi-lx-{job_id}.log", help="Where a job's log is, named in the spawn error when "
        "the job ends early; {job_id} is replaced. Change it with the batch template's output path."
    ).tag(config=True)

    req_ntasks = Unicode("1", help="MPI ranks of the job (set from the user's choice).")
    req_ncpus = Unicode("1", help="Cores of the job: ranks x threads (set from the choice).")
    req_nodes = Unicode("1", help="Nodes of the job (set from the user's choice).")
    req_ntasks_per_node = Unicode("1", help="MPI ranks on each node (set from the choice).")
    req_ncpus_per_node = Unicode("1", help="Cores asked of each node (set from the choice).")

    dask_options: DaskOptions | None = None

    @validate_trait("dask_accounts")
    def _check_dask_accounts(self, proposal: Any) -> list[str]:
        try:
            return list(check_accounts(proposal["value"], "dask_accounts"))
        except ValueError as e:
            raise TraitError(str(e)) from None

    @validate_trait("dask_burst_max_jobs", "dask_burst_max_nodes")
    def _check_burst_numbers(self, proposal: Any) -> int:
        name, value = proposal["trait"].name, proposal["value"]
        low = 0 if name == "dask_burst_max_jobs" else 1
        if value < low:
            raise TraitError(f"{name}: got {value}; expected {low} or more")
        return value

    @validate_trait("dask_queue_max_nodes")
    def _check_queue_nodes(self, proposal: Any) -> dict[str, int]:
        bad = {q: n for q, n in proposal["value"].items() if n < 1}
        if bad:
            raise TraitError(f"dask_queue_max_nodes: {bad}; each queue allows 1 node or more")
        return proposal["value"]

    @validate_trait("dask_burst_queue")
    def _check_burst_queue(self, proposal: Any) -> str:
        value = proposal["value"]
        if value and not _QUEUE.fullmatch(value):
            raise TraitError(f"dask_burst_queue: got {value[:16]!r}; expected a queue name "
                             "(letters, digits and _.@-)")
        return value

    def dask_account_choices(self) -> tuple[str, ...]:
        """The project codes this user may pick: the hook's answer, else `dask_accounts`."""
        if self.dask_accounts_hook is None:
            return tuple(self.dask_accounts)
        try:
            return check_accounts(self.dask_accounts_hook(self), "dask_accounts_hook")
        except ValueError as e:
            self.log.error("%s (user %s)", e, self.user.name)
            raise web.HTTPError(500, "the site's list of your projects could not be read; "
                                "tell the admins") from None

    def dask_limits(self) -> Limits:
        """The admin's limits as `Limits` (a bad admin value fails loudly, at spawn)."""
        return Limits(
            max_cores=self.dask_max_cores,
            max_nodes=self.dask_max_nodes,
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
            cores_per_node=self._cores_per_node(),
            accounts=self.dask_account_choices(),
            queue_walltime={q: parse_walltime("walltime", w, 10**7)
                            for q, w in self.dask_queue_max_walltime.items()},
            queue_nodes=dict(self.dask_queue_max_nodes),
            memory_per_node={q: parse_memory("worker_memory", m, 2**50)
                             for q, m in self.dask_memory_per_node.items()},
            notebook_memory=parse_memory("worker_memory", self.dask_notebook_memory, 2**50),
            job_priorities=self._job_priority_choices(),
        )

    def _job_priority_choices(self) -> tuple[str, ...]:
        """The job priorities users may pick; none where the batch system has no such setting."""
        return ()

    def _cores_per_node(self) -> dict[str, int]:
        return dict(self.dask_cores_per_node)

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
        if isinstance(user_options, dict) and self.dask_ignored_options:
            user_options = {k: v for k, v in user_options.items()
                            if k not in self.dask_ignored_options}
        try:
            opts = validate(user_options, self.dask_limits())
        except OptionError as e:
            raise web.HTTPError(400, str(e)) from None
        self.dask_options = opts
        self.user_options = opts.as_user_options()
        notebook = parse_memory("worker_memory", self.dask_notebook_memory, 2**50)
        self.req_ntasks = str(opts.ranks)
        self.req_nodes = str(opts.nodes)
        self.req_ntasks_per_node = str(opts.ranks_per_node)
        self.req_nprocs = str(opts.threads)
        self.req_ncpus = str(opts.threads * opts.ranks)
        self.req_ncpus_per_node = str(self._ncpus_per_node(opts))
        self.req_runtime = opts.walltime_hms
        self.req_memory = self._memory_request(opts.memory_per_node(notebook))
        self.req_partition = opts.partition
        if opts.dask and self.dask_launcher == "srun":
            self.req_srun = ""

    def _ncpus_per_node(self, opts: DaskOptions) -> int:
        return opts.ranks_per_node * opts.threads

    def _memory_request(self, per_node: int) -> str:
        """Slurm's --mem is per node."""
        return f"{math.ceil(per_node / 2**20)}M"

    async def _get_batch_script(self, **subvars: Any) -> str:
        """Render the script from validated options only, whatever called (or skipped)
        `apply_user_options`: JupyterHub before 5.3 never calls it, and batchspawner pastes
        `user_options` into the template. A refusal is an HTTP 400 and nothing is submitted.
        Options applied already (JupyterHub 5.3+) are not applied again, so what a site's own
        `apply_user_options` set after ours stays."""
        opts = self.dask_options
        if opts is None or self.user_options != opts.as_user_options():
            self.apply_dask_options(self.user_options)
        return await super()._get_batch_script(**self.dask_batch_subvars())

    def dask_batch_subvars(self) -> dict[str, Any]:
        """The template's variables, as batchspawner builds them, from validated values."""
        subvars = self.get_req_subvars()
        subvars["cmd"] = self.cmd_formatted_for_batch()
        subvars.update(self.user_options)
        # the batch system passes on only the names in keepvars (sbatch --export, qsub -v),
        # whatever req_keepvars the site set: add the burst settings' names
        names = [n for n in subvars.get("keepvars", "").split(",") if n]
        names += [n for n in self.dask_burst_env() if n not in names]
        subvars["keepvars"] = ",".join(names)
        return subvars

    def dask_burst_env(self) -> dict[str, str]:
        """The hub's burst limits for the job's cluster (`dask_burst_max_jobs` > 0), as the
        ``mpi-lx.burst`` dask-config keys; empty when bursting is off."""
        if self.dask_burst_max_jobs <= 0:
            return {}
        opts = self.dask_options
        queue = self.dask_burst_queue or (opts.partition if opts else self.req_partition)
        return {
            "DASK_MPI_LX__BURST__ENABLED": "true",
            "DASK_MPI_LX__BURST__MAX_JOBS": str(self.dask_burst_max_jobs),
            "DASK_MPI_LX__BURST__QUEUE": queue,
            "DASK_MPI_LX__BURST__MAX_NODES": str(self.dask_burst_max_nodes),
        }

    def get_env(self) -> dict[str, str]:
        """batchspawner's job environment (what sbatch/qsub run with), plus the burst limits."""
        env = super().get_env()
        env.update(self.dask_burst_env())
        return env

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
                        log = self.dask_job_log.replace("{job_id}", self.job_id)
                        raise RuntimeError(f"The batch job {self.job_id} ended before Jupyter "
                                           f"started; the job's log ({log}) says why")
        finally:
            starting.cancel()

    def _job_summary(self) -> str:
        """"12 cores on 2 nodes: Jupyter, a Dask scheduler and 10 workers" (for progress)."""
        opts = self.dask_options
        if not opts or not opts.dask:
            return "Jupyter only (no Dask cluster)"
        where = f" on {opts.nodes} nodes" if opts.nodes > 1 else ""
        return f"{opts.cores} cores{where}: Jupyter, a Dask scheduler and {opts.workers} workers"

    async def progress(self) -> Any:
        yield {"progress": 5, "message": f"Submitting the batch job ({self._job_summary()})"}
        while not self.job_id:
            await asyncio.sleep(0.2)
        opts = self.dask_options  # set by now, also where apply_user_options was skipped
        yield {"progress": 10,
               "message": f"Submitted batch job {self.job_id} ({self._job_summary()})"}
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


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD")


def is_secret(name: str, value: str, token: str) -> bool:
    """Whether an environment variable is a credential (the server's hub token, or named so)."""
    return bool(token and value == token) or any(w in name.upper() for w in _SECRET_WORDS)


class DaskMPIPBSSpawner(DaskMPISpawnerMixin, batchspawner.PBSSpawner):
    """PBSSpawner (PBS Pro, NCAR-style) with ``select=K:ncpus=..:mpiprocs=..:mem=..``.

    The job's secrets (the server's hub token) are exported in the script body, not passed with
    ``#PBS -v``: PBS keeps -v variables, values included, in the job's Variable_List, which
    ``qstat -f`` shows to other users where the server sets ``query_other_jobs``. So are values
    that ``-v`` would cut at a comma or mangle (JupyterHub's JSON scopes). qsub reads
    the script from stdin and PBS shows no script body in ``qstat -f``.
    """

    dask_pbs_whole_node_ncpus = Dict(
        value_trait=Integer(), key_trait=Unicode(),
        help="Queue -> cores of its nodes, for queues that give whole nodes (NCAR Derecho's "
        "main: {\"main\": 128}). Jobs there ask each chunk for ncpus=<that> whatever the ranks "
        "x threads, and it bounds ranks per node x threads like dask_cores_per_node. Queues "
        "not listed (shared nodes, e.g. Casper) ask ncpus = ranks per node x threads."
    ).tag(config=True)

    dask_pbs_job_priorities = List(
        Unicode(), help="Values of PBS's job_priority users may pick (#PBS -l job_priority=), "
        "the first the default, e.g. NCAR Derecho's [\"regular\", \"economy\", \"premium\"]. "
        "Empty (the default): the form has no priority field and the job no such line."
    ).tag(config=True)

    @validate_trait("dask_pbs_job_priorities")
    def _check_job_priorities(self, proposal: Any) -> list[str]:
        for value in proposal["value"]:
            if not _PRIORITY.fullmatch(value):
                raise TraitError(f"dask_pbs_job_priorities: got {value[:16]!r}; expected a word "
                                 "(letters, digits and _, at most 32)")
        return list(dict.fromkeys(proposal["value"]))

    def _job_priority_choices(self) -> tuple[str, ...]:
        return tuple(self.dask_pbs_job_priorities)

    @default("batch_script")
    def _batch_script_default(self) -> str:
        return template("pbs.sh.j2")

    @default("batch_submit_cmd")
    def _batch_submit_cmd_default(self) -> str:
        # qsub records its working directory (PBS_O_WORKDIR) and refuses one the user cannot
        # read, such as a hub's private directory: submit from the user's home. -f: in the
        # foreground (OpenPBS's qsub otherwise leaves a daemon of the user's running)
        return "/bin/sh -c 'cd && exec qsub -f'"

    @default("dask_job_log")
    def _dask_job_log_default(self) -> str:
        # pbs.sh.j2: "-o <home>/" names a directory, so PBS names the file after the job id
        return "~/{job_id}.OU"

    def _cores_per_node(self) -> dict[str, int]:
        return {**self.dask_pbs_whole_node_ncpus, **self.dask_cores_per_node}

    def _ncpus_per_node(self, opts: DaskOptions) -> int:
        whole = self.dask_pbs_whole_node_ncpus.get(opts.partition)
        return whole or opts.ranks_per_node * opts.threads

    def _memory_request(self, per_node: int) -> str:
        """PBS's mem= is per chunk, one chunk per node."""
        return f"{math.ceil(per_node / 2**30)}GB"

    def dask_batch_subvars(self) -> dict[str, Any]:
        """keepvars without the secrets; `private_env` exports them in the script body."""
        subvars = super().dask_batch_subvars()
        if "private_env" not in self.batch_script:  # an old custom template: keep it working
            self.log.warning("the PBS batch_script has no {{private_env}}: the hub token goes "
                             "into the job's Variable_List (qstat -f)")
            return subvars
        env = self.get_env()
        names = [n for n in subvars.get("keepvars", "").split(",") if n]
        in_body = [n for n in names if n in env and (
            is_secret(n, env[n], self.api_token or "") or not pbs_v_safe(env[n]))]
        subvars["keepvars"] = ",".join(n for n in names if n not in in_body)
        subvars["private_env"] = "\n".join(f"export {n}={shlex.quote(env[n])}" for n in in_body
                                           if _ENV_NAME.fullmatch(n))
        return subvars


def pbs_v_safe(value: str) -> bool:
    """Whether qsub -v carries ``value`` intact: PBS splits its variable list at commas and
    mangles quotes (JupyterHub's JSON scopes have both), so such values go in the body."""
    return not any(ch in value for ch in ',"\'\n\\')
