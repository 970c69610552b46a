"""`MPIJobCluster`: a `distributed` Cluster that runs as MPI batch jobs of its own."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from typing import Any

from distributed.core import Status, rpc
from distributed.deploy.cluster import Cluster

from ..cluster.adaptive import MPIAdaptive
from ..cluster.mpicluster import MPICluster
from ..config import duration, setting
from ..exceptions import MPILXError, ScaleError
from ..runtime.cluster_dir import ClusterDir
from ..runtime.roles import plural_workers, rank_of_worker
from ..runtime.tls import JobTLS, new_job_tls, security_for
from .batch_system import batch_system
from .jobset import JobSet
from .spec import MIN_FIRST_JOB, job_spec
from .sweep import CLUSTER_ID, sweep_quietly

logger = logging.getLogger(__name__)

CONTACT_INTERVAL = 1.0  # seconds between looks for the scheduler's address (a file)
FIRST_POLL = 2.0  # seconds to the first batch query after a submit; doubles to poll-interval
BACKOFF = 10  # a failing batch system is asked at most every BACKOFF x poll-interval


def existing_directory(parent: str, cluster_id: str) -> ClusterDir:
    """The directory of this user's job cluster ``cluster_id``, checked private;
    `MPILXError` says what is wrong."""
    if not isinstance(cluster_id, str) or not CLUSTER_ID.fullmatch(cluster_id):
        raise MPILXError(f"{str(cluster_id)[:40]!r} is not a job cluster's id (8 hex digits, as "
                         "in 'MPI jobs 1a2b3c4d' or `dask-mpi-lx clusters list`)")
    directory = ClusterDir(os.path.join(os.path.expanduser(str(parent)), cluster_id))
    if not directory.path.is_dir():
        raise MPILXError(f"no job cluster {cluster_id} of yours (no directory "
                         f"{directory.path}); `dask-mpi-lx clusters list` shows them")
    directory.check()
    return directory


def _joining_prefix(job_id: str) -> str:
    """The name prefix of a joining job's workers (`roles.plan_join`)."""
    return f"job-{job_id.split('.')[0]}-"


class MPIJobCluster(MPICluster):
    """A Dask cluster of MPI batch jobs, submitted from where this object lives (a login-node
    Lab, a small hub server, a notebook inside another job).

    The first job runs ``dask-mpi-lx serve``: rank 0 keeps the job, rank 1 the scheduler,
    every other rank a parkable worker. ``scale(n)`` parks or unparks those workers and,
    beyond them, submits or cancels whole jobs whose ranks all run workers for the same
    scheduler; ``adapt()`` does the same. ``close()`` cancels every job. TLS keys are made
    here and reach the jobs in a 0700 directory in your home (``mpi-lx.jobs.directory``).
    A job ends by itself once no cluster object has been attached for ``mpi-lx.jobs.lease``
    (the kernel holding this object was killed).

    ``wait`` (default: unless ``asynchronous``) makes starting the cluster wait until the
    first job runs and its scheduler answers, so that ``Client(cluster)`` follows at once; at
    most ``start_timeout`` (``mpi-lx.jobs.start-timeout``), then the job is cancelled and
    `MPILXError` says how far it got.
    Without it (the Dask tab's NEW) starting returns once the job is submitted; until it runs
    the cluster has no workers and its title says the job is pending.

    Parameters default to the ``mpi-lx.jobs`` config: ``nodes`` and ``cores`` (MPI ranks)
    per job, ``threads`` and ``worker_memory`` per worker, ``walltime`` ("HH:MM:SS"),
    ``queue``, ``account``, ``launcher`` (mpirun, srun, mpiexec, pals), ``batch_system`` (slurm,
    pbs), ``prologue`` (shell lines before the launcher), ``job_extra`` (batch directives,
    e.g. ``["--oversubscribe"]``) and ``template`` (a batch script).

    Examples
    --------
    >>> cluster = MPIJobCluster(nodes=2, cores=16, walltime="00:30:00")   # doctest: +SKIP
    >>> cluster.scale(40)           # 14 workers in the first job, 2 more jobs of 15
    """

    def __init__(self, nodes: int | None = None, cores: int | None = None,
                 threads: int | None = None, worker_memory: str | int | None = None,
                 walltime: str | None = None, queue: str | None = None,
                 account: str | None = None, *, launcher: str | None = None,
                 batch_system: str | None = None, prologue: str | None = None,
                 template: str | None = None, job_extra: list[str] | None = None,
                 directory: str | None = None, wait: bool | None = None,
                 start_timeout: str | float | None = None, asynchronous: bool = False,
                 loop: Any = None, name: str | None = None,
                 shutdown_on_close: bool | None = None, _existing: str | None = None,
                 _dask_tab: bool = False):
        if not setting("jobs.enabled"):
            raise MPILXError("launching MPI job clusters is turned off at this site "
                             "(mpi-lx.jobs.enabled: false); use the job's own cluster")
        self._parent = directory or setting("jobs.directory")
        self._dir: ClusterDir | None = None
        # the object that made the cluster ends it on close; one attached by name detaches
        self._shutdown_on_close = (_existing is None if shutdown_on_close is None
                                   else shutdown_on_close)
        if _existing is None:
            self._spec = job_spec("jobs", nodes=nodes, cores=cores, threads=threads,
                                  worker_memory=worker_memory, walltime=walltime, queue=queue,
                                  account=account, launcher=launcher,
                                  batch_system=batch_system, prologue=prologue,
                                  template=template, job_extra=job_extra)
            if self._spec.cores < MIN_FIRST_JOB:
                raise ScaleError(f"cores={self._spec.cores}: a cluster's first job needs at "
                                 f"least {MIN_FIRST_JOB} ranks (keeper, scheduler, one worker)")
            self.cluster_id = secrets.token_hex(4)
            self._tls: JobTLS | None = new_job_tls()
        else:
            self.cluster_id = _existing
            self._dir = existing_directory(self._parent, _existing)
            self._tls = self._dir.load_tls()
            self._spec = job_spec("jobs", **(self._dir.read_shape() or {}))
        self._existing = _existing is not None
        self._dask_tab = _dask_tab  # made by NEW: listed again after its server restarts
        self._max_jobs = int(setting("jobs.max-jobs"))
        self._jobs: JobSet | None = None
        self._target: int | None = None
        self._problem = ""
        self._dashboard = ""  # where the first job's dashboard listens, once attached
        self._tasks: list[asyncio.Task] = []
        self._wait = not asynchronous if wait is None else wait
        self._start_timeout = duration("jobs.start-timeout", start_timeout)
        self._poll = duration("jobs.poll-interval")
        try:
            super().__init__(mode="attach", security=security_for(self._tls),
                             asynchronous=asynchronous, loop=loop,
                             name=name or f"MPI jobs {self.cluster_id}")
        except BaseException:  # e.g. Ctrl-C while the job was queued: no job stays behind
            self._cancel_now()
            raise

    @classmethod
    def from_name(cls, name: str, *, directory: str | None = None, asynchronous: bool = False,
                  loop: Any = None, shutdown_on_close: bool = False) -> MPIJobCluster:
        """Attach to the running job cluster ``name`` (its id, as in "MPI jobs <id>" and
        ``dask-mpi-lx clusters list``) from any process of its owner: a new kernel, a
        script, a restarted Lab. Its keys and jobs' shape come from its directory, its jobs
        from the batch system. ``close()`` detaches (the jobs go on) unless
        ``shutdown_on_close``; `shutdown` ends the cluster."""
        return cls(directory=directory, asynchronous=asynchronous, loop=loop,
                   shutdown_on_close=shutdown_on_close, _existing=name)

    def shutdown(self) -> Any:
        """Cancel every job of the cluster and remove its directory, whoever made it."""
        self._shutdown_on_close = True
        return self.close()

    def _cancel_now(self) -> None:
        """Cancel this cluster's jobs (by name too: a submit cut short by Ctrl-C has no id
        here yet) without the cluster's event loop, and remove its directory."""
        from concurrent.futures import ThreadPoolExecutor

        if not self._shutdown_on_close:  # attached by name: the cluster is not ours to end
            return
        if self._jobs is not None:
            with ThreadPoolExecutor(1) as pool:  # this thread may run a loop (a kernel's)
                try:
                    pool.submit(asyncio.run, self._jobs.cancel_all()).result(timeout=150)
                except Exception as e:
                    logger.error("%s: could not cancel its jobs: %s", self.name, e)
        if self._dir is not None:
            self._dir.remove()

    # ------------------------------------------------------------------ start
    async def _start(self) -> None:
        """Make the cluster directory and keys, submit the first job, and return: the
        cluster attaches to its scheduler in the background once the job runs."""
        if not self._begin_start():
            return
        try:
            if self._existing:
                await self._find_jobs()
            else:
                await sweep_quietly(self._parent, batch_system(self._spec.batch_system))
                self._dir = ClusterDir.create(self._parent, self.cluster_id, self._tls)
                self._dir.write_shape(self._spec.as_settings())
                if self._dask_tab:
                    self._dir.mark_made_by_dask_tab()
                self._jobs = JobSet(f"dmlx-{self.cluster_id}", self._spec, self._dir)
                await self._jobs.submit(joining=False)
        except BaseException:
            self.status = Status.failed
            await self._close()
            raise
        self.status = Status.running
        attach = asyncio.ensure_future(self._attach_when_running())
        self._tasks = [attach, asyncio.ensure_future(self._follow_jobs(attach))]
        asyncio.get_running_loop().call_soon(self._retitle)
        if self._wait:
            try:
                await asyncio.wait_for(asyncio.shield(attach), self._start_timeout)
            except asyncio.TimeoutError:
                state = self._jobs.states.get(self._jobs.first or "")
                fate = ("it is cancelled. MPIJobCluster(wait=False) keeps it queued"
                        if self._shutdown_on_close else "it stays queued")
                self._problem = (f"job {self._jobs.first} did not start within "
                                 f"{self._start_timeout:g}s (it was {state.state if state else '?'}"
                                 f"); {fate}")
            if self._problem:
                problem = self._problem
                await self._close()
                raise MPILXError(f"{self.name}: {problem}")

    async def _find_jobs(self) -> None:
        """An existing cluster's jobs, from the batch system: the first is the one whose
        scheduler wrote the contact (else the oldest); `MPILXError` when none is left."""
        assert self._dir is not None
        self._jobs = JobSet(f"dmlx-{self.cluster_id}", self._spec, self._dir)
        listed = [j for j in await self._jobs.system.list(self._jobs.job_name) if j.active]
        if not listed:
            raise MPILXError(f"job cluster {self.cluster_id} has no job left in the batch "
                             "system: it has ended")
        contact = self._dir.read_contact()
        ids = [j.job_id for j in listed]
        self._jobs.first = contact.job_id if contact and contact.job_id in ids else ids[0]
        self._jobs.states = {j.job_id: j for j in listed}

    async def _refresh(self) -> bool:
        """Ask the batch system for the jobs' states; False (logged) if it did not answer."""
        assert self._jobs is not None
        try:
            await self._jobs.refresh()
        except MPILXError as e:
            logger.warning("%s: %s", self.name, e)
            return False
        return True

    def _first_ended(self) -> bool:
        first = self._jobs.states.get(self._jobs.first) if self._jobs else None
        return first is not None and not first.active

    async def _attach_when_running(self) -> None:
        assert self._dir is not None and self._jobs is not None
        loop = asyncio.get_running_loop()
        gap, next_poll = FIRST_POLL, loop.time() + FIRST_POLL
        try:
            # the contact file is looked for every second; the batch system (is the job
            # still there?) far less often: FIRST_POLL, doubling up to poll-interval
            while (contact := self._dir.read_contact()) is None:
                if loop.time() >= next_poll:
                    await self._refresh()
                    if self._first_ended():
                        self._problem = (f"job {self._jobs.first} ended before its scheduler "
                                         f"started; see {self._jobs.log_path(self._jobs.first)}")
                        logger.error("%s: %s", self.name, self._problem)
                        return
                    gap = min(2 * gap, self._poll)
                    next_poll = loop.time() + gap
                await asyncio.sleep(CONTACT_INTERVAL)
            await self._refresh()  # the job runs: its hosts for the title
            self.scheduler_comm = rpc(contact.address,
                                      connection_args=self.security.get_connection_args("client"))
            await self._connect(contact.address)
            await self._subscribe()
            self._dashboard = contact.dashboard
            logger.info("%s: attached to the scheduler at %s (job %s on %s)", self.name,
                        contact.address, contact.job_id, ", ".join(contact.hosts))
            if self._target is not None:
                await self._scale(self._target)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._problem = f"could not attach to job {self._jobs.first}: {e}"
            logger.error("%s: %s", self.name, self._problem)
        finally:
            self._retitle()

    async def _follow_jobs(self, attach: asyncio.Future) -> None:
        """Once attached, keep the jobs' states (and so the title) current, one batch query
        per poll-interval (backing off while the batch system fails); say when the first
        job ends."""
        await asyncio.wait([attach])
        gap = self._poll
        while True:
            await asyncio.sleep(gap)
            gap = self._poll if await self._refresh() else min(2 * gap, BACKOFF * self._poll)
            if self._first_ended() and not self._problem:
                self._problem = f"job {self._jobs.first} has ended"
                logger.warning("%s: %s; the cluster is gone", self.name, self._problem)
            self._retitle()

    # ------------------------------------------------------------------ scaling
    @property
    def jobs(self) -> dict[str, dict]:
        """Each job's ``{"state", "hosts", "first"}`` as last seen."""
        if not self._jobs:
            return {}
        return {i: {"state": s.state, "hosts": list(s.hosts), "first": i == self._jobs.first}
                for i, s in self._jobs.states.items()}

    @property
    def capacity(self) -> int:
        """Most workers this cluster can reach: the first job's and ``max-jobs - 1`` more jobs'."""
        return self._spec.workers(False) + (self._max_jobs - 1) * self._spec.workers(True)

    async def _scale(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ScaleError(f"cannot scale to {n!r}: give a whole number from 0 to {self.capacity}")
        if n > self.capacity:
            raise ScaleError(
                f"cannot scale to {n} workers: at most {self._max_jobs} jobs (mpi-lx.jobs.max-jobs)"
                f" of {self._spec.cores} ranks give {self.capacity} workers")
        if self._problem:
            raise ScaleError(f"{self.name}: {self._problem}")
        assert self._jobs is not None
        self._target = n
        await self._refresh()
        await self._jobs.match_workers(max(0, n - self._spec.workers(False)))
        if self._pool is not None:
            await MPICluster._scale(self, min(n, self.limit))
        self._retitle()

    async def _park(self, names: list[str]) -> None:
        """Adaptive's scale-down: park the first job's workers; a joining job whose workers
        are all named (or that has not started) is cancelled, others lose the named workers."""
        own = [n for n in names if rank_of_worker(str(n)) is not None]
        if own:
            await MPICluster._park(self, own)
        assert self._jobs is not None
        connected = [str(w.get("name")) for w in self.scheduler_info.get("workers", {}).values()]
        cancel, retire = [], []
        for job in self._jobs.joining:
            prefix = _joining_prefix(job.job_id)
            named = {str(n) for n in names if str(n).startswith(prefix)}
            if not named:
                continue
            mine = {w for w in connected if w.startswith(prefix)}
            if job.state == "pending" or mine <= named:
                cancel.append(job.job_id)
            else:
                retire.extend(sorted(named & mine))
        await self._jobs.cancel(cancel)
        if retire and self.scheduler_comm is not None:
            await self.scheduler_comm.retire_workers(names=retire, close_workers=True)

    @property
    def plan(self) -> set[str]:
        names = set(MPICluster.plan.fget(self))  # type: ignore[attr-defined]
        connected = {str(w.get("name")) for w in self.scheduler_info.get("workers", {}).values()}
        for job in self._jobs.joining if self._jobs else ():
            prefix = _joining_prefix(job.job_id)
            mine = {w for w in connected if w.startswith(prefix)}
            names |= mine or {f"{prefix}pending-{k}" for k in range(self._jobs.workers_of(job))}
        return names

    requested = plan

    def adapt(self, minimum: int = 0, maximum: int | None = None, **kwargs: Any) -> MPIAdaptive:
        """Scale between ``minimum`` and ``maximum`` workers (default: `capacity`) by load,
        parking within the first job and submitting or cancelling joining jobs beyond it."""
        maximum = self.capacity if maximum is None else min(maximum, self.capacity)
        minimum = minimum or 0
        if minimum < 0 or maximum < minimum:
            raise ScaleError(f"adapt needs 0 <= minimum <= maximum, got {minimum}, {maximum}")
        return Cluster.adapt(self, Adaptive=MPIAdaptive, minimum=minimum, maximum=maximum,
                             **kwargs)

    # ------------------------------------------------------------------ close
    async def _close(self) -> None:
        if self.status == Status.closed:
            return
        for task in self._tasks:
            task.cancel()
        if self._jobs is not None and self._shutdown_on_close:
            try:
                await self._jobs.cancel_all()
            except MPILXError as e:
                logger.error("%s: could not cancel its jobs: %s", self.name, e)
        await MPICluster._close(self)
        if self._dir is not None and self._shutdown_on_close:
            self._dir.remove()

    # ------------------------------------------------------------------ display
    def _pending_workers(self) -> int:
        if not self._jobs:
            return 0
        first = self._jobs.states.get(self._jobs.first or "")
        pending = self._spec.workers(False) if first and first.state == "pending" else 0
        return pending + sum(self._jobs.workers_of(j) for j in self._jobs.joining
                             if j.state == "pending")

    @property
    def scheduler_address(self) -> str:
        """``mpi-lx://<id>`` once attached (`jobs.address`): in any process of the owner,
        ``Client(address)`` finds the scheduler and the cluster's keys by that id."""
        if self.scheduler_comm is None:
            return "<Not Connected>"
        from .address import cluster_address

        return cluster_address(self.cluster_id)

    @property
    def dashboard_link(self) -> str:
        """The dashboard through the owner's Jupyter server (`cluster.dashboard_route`);
        on the node it answers only the cluster's key. "" until the first job runs."""
        from ..cluster.dashboard_route import cluster_dashboard_link

        return cluster_dashboard_link(self.cluster_id) if self._dashboard else ""

    @property
    def title(self) -> str:
        """"MPI jobs ab12cd34: 2 workers, 3 pending (job 12 running on n1, job 13 pending)"."""
        text = f"{self.name}: {plural_workers(len(self.scheduler_info.get('workers', {})))}"
        pending = self._pending_workers()
        if pending:
            text += f", {pending} pending"
        if self._jobs and self._jobs.states:
            text += f" ({self._jobs.describe()})"
        if self._problem:
            text += f": {self._problem}"
        return text

    def __repr__(self) -> str:
        return f"MPIJobCluster({self.title!r}, {self.scheduler_address!r})"

    def _repr_html_(self, cluster_status: Any = None) -> str:
        import html

        rows = "".join(f"<tr><td>{html.escape(i)}</td><td>{j['state']}</td>"
                       f"<td>{html.escape(', '.join(j['hosts']))}</td></tr>"
                       for i, j in self.jobs.items())
        return (f"<div><strong>MPIJobCluster: {html.escape(self.title)}</strong><table>"
                f"<tr><th>Job</th><th>State</th><th>Hosts</th></tr>{rows}</table></div>")
