"""`MPICluster`: a `distributed` Cluster for the Dask part of an MPI job."""

from __future__ import annotations

import asyncio
import html
import logging
import os
import time
import warnings
import weakref
from typing import Any, ClassVar

from dask.utils import parse_timedelta
from distributed.core import Status, rpc
from distributed.deploy.cluster import Cluster
from distributed.objects import SchedulerInfo
from distributed.security import Security

from ..config import JOB_ID, attach_setting, burst_enabled, job_setting
from ..exceptions import MPILXError, ScaleError, SchedulerNotFoundError
from ..runtime.roles import plural_workers, rank_of_worker
from .adaptive import MPIAdaptive
from .dashboard import job_dashboard_link
from .labcard import retitle
from .pool_view import PoolView

logger = logging.getLogger(__name__)


class ScaleWarning(UserWarning):
    """A scale request did not finish because a later one took over."""


class MPICluster(Cluster):
    """The Dask cluster of an MPI job, as a `distributed.deploy.Cluster`.

    Two modes, one implementation:

    * **attach** (inside a job started by ``dask-mpi-lx launch``, e.g. a notebook or the
      Dask tab): finds the job's scheduler from the dask config and environment the launcher
      set, retrying until it answers. ``close()`` detaches, or with ``park_on_close`` (the
      Dask tab's SHUTDOWN) first parks every worker of the job.
    * **batch** (a script run as ``mpirun -np N python script.py``): rank 0 runs the script,
      the other ranks become the scheduler and workers inside the constructor. ``close()``
      stops every rank; they then exit, or with ``exit=False`` return from the constructor.

    The mode is ``batch`` when this process is one of several MPI ranks, else ``attach``.
    Every `MPICluster` of one job is named "MPI job <id>"; its repr and its card in the Dask
    tab read "MPI job <id>: <n> workers" and follow scaling.

    Scaling stays within the allocation: ``scale(n)`` parks or unparks worker ranks (a parked
    rank stays alive with its worker process stopped), and ``adapt()`` does the same
    automatically. Workers and the pool's state come pushed from the scheduler (no polling).

    Parameters
    ----------
    address : str, optional
        Scheduler to attach to; default: dask config ``scheduler-address``, which the
        launcher sets (also through ``DASK_SCHEDULER_ADDRESS``).
    security : Security, optional
        Default: ``Security()`` from the dask config (the job's TLS files).
    timeout : str or float, optional
        How long to retry an unreachable scheduler; default ``mpi-lx.attach.timeout``.
    exclusive : bool
        Refuse a second attachment to the same scheduler in this process (the Dask tab's NEW
        button then explains instead of listing the same cluster twice).
    park_on_close : bool
        Attach mode: ``close()`` parks every worker of the job before detaching (the ranks
        stay; a later `MPICluster` scales them back up). The Dask tab's cluster has it on,
        so its SHUTDOWN stops the job's workers instead of hiding a running cluster.
    mode : {"attach", "batch"}, optional
        Force a mode instead of detecting it.
    exit : bool
        Batch mode: whether ranks above 0 end their process once rank 0 closes the cluster
        (default, as ``dask_mpi.initialize()``), or return from the constructor with a closed
        cluster whose ``rank`` is theirs so that the script goes on on every rank
        (``dask_mpi.initialize(exit=False)``).
    **settings
        Batch mode only: ``mpi-lx`` settings (``nthreads``, ``memory_limit``, ...).

    Examples
    --------
    >>> from distributed import Client
    >>> cluster = MPICluster()                  # inside a launched job
    >>> cluster.scale(2)                        # park all but two workers
    >>> with MPICluster() as cluster, Client(cluster) as client:   # under mpirun
    ...     client.submit(sum, [1, 2]).result()
    3
    """

    _attached: ClassVar[weakref.WeakValueDictionary] = weakref.WeakValueDictionary()

    def __init__(
        self,
        address: str | None = None,
        *,
        security: Security | None = None,
        timeout: str | float | None = None,
        exclusive: bool = False,
        park_on_close: bool = False,
        mode: str | None = None,
        exit: bool = True,
        asynchronous: bool = False,
        loop: Any = None,
        name: str | None = None,
        **settings: Any,
    ):
        from .batch import in_mpi_world

        if mode is None:
            mode = "batch" if in_mpi_world() else "attach"
        if mode not in ("attach", "batch"):
            raise ValueError(f"mode must be 'attach' or 'batch', got {mode!r}")
        if settings and mode != "batch":
            raise TypeError(f"unexpected arguments for attach mode: {sorted(settings)}")
        self.mode = mode
        self.rank = 0  # this process's MPI rank in batch mode; 0 runs the client
        self._channel: Any = None
        self._started: Any = None
        self._address = address
        self.security = security or Security()
        self._timeout = attach_setting("timeout") if timeout is None else float(
            parse_timedelta(timeout))
        self._exclusive = exclusive
        self._park_on_close = park_on_close and mode == "attach"
        self._pool: PoolView | None = None
        self._burst: Any = None  # jobs.burst.Burst, made on the first scale past the allocation
        super().__init__(asynchronous=asynchronous, loop=loop,
                         name=name or f"MPI job {job_setting(JOB_ID) or '?'}")
        if mode == "batch" and not self._setup_batch(settings, exit):
            self.status = Status.closed  # a rank above 0 with exit=False: served, now done
            return
        self._loop_runner.start()
        if not self.asynchronous:
            try:
                self.sync(self._start)
            except BaseException:
                self._loop_runner.stop()
                raise

    # ------------------------------------------------------------------ start
    def _setup_batch(self, settings: dict, exit: bool) -> bool:
        """True on rank 0 (the client); other ranks serve here and exit or return False."""
        from ..config import resolve
        from ..mpi.channel import Channel
        from .batch import serve_and_exit, serve_and_return

        channel = Channel()
        if channel.rank != 0:
            self.rank = channel.rank
            if exit:
                serve_and_exit(channel)
            serve_and_return(channel)
            return False
        self._settings = resolve(**settings)
        channel.poll_interval = self._settings.poll_interval
        self._channel = channel
        return True

    def __await__(self):
        async def _start_once():
            if self.status == Status.created:
                await self._start()
            return self

        return _start_once().__await__()

    def _where_we_looked(self) -> str:
        return (f"argument address={self._address!r}, dask config 'scheduler-address' "
                f"(DASK_CONFIG={os.environ.get('DASK_CONFIG')!r}), "
                f"DASK_SCHEDULER_ADDRESS={os.environ.get('DASK_SCHEDULER_ADDRESS')!r}")

    def _begin_start(self) -> bool:
        """Move to "starting"; False when already running (starting twice is a no-op)."""
        if self.status == Status.running:
            return False
        if self.status != Status.created:
            raise ValueError(f"cannot start a cluster that is {self.status.name}")
        self.status = Status.starting
        return True

    async def _start(self) -> None:
        """Connect, then follow the scheduler's stream of workers and pool changes; on any
        failure the cluster closes itself (stopping batch ranks) and re-raises."""
        if not self._begin_start():
            return
        try:
            address = await (self._start_batch() if self.mode == "batch" else self._find())
            if self._exclusive:
                other = self._attached.get(address)
                if other is not None and other.status == Status.running:
                    raise MPILXError(
                        f"this MPI job's cluster ({address}) is already attached here as "
                        f"{other.name!r}; an MPI job has exactly one cluster: scale that one")
            self.scheduler_comm = rpc(
                address, connection_args=self.security.get_connection_args("client"))
            await self._connect(address)
            await self._subscribe()
        except BaseException:
            self.status = Status.failed
            await self._close()
            raise
        if self._exclusive:
            self._attached[address] = self
        asyncio.get_running_loop().call_soon(self._retitle)  # once the Dask tab lists it

    async def _find(self) -> str:
        import dask.config

        address = self._address or dask.config.get("scheduler-address", default=None)
        if not address:
            raise SchedulerNotFoundError(
                "no Dask scheduler address for this job; looked at " + self._where_we_looked()
                + ". Start the job with `dask-mpi-lx launch`, or pass the address.")
        return address

    async def _start_batch(self) -> str:
        from ..mpi.environ import job_id
        from ..runtime.coordinator import start_cluster
        from ..runtime.tls import security_for

        self._started = await start_cluster(self._channel, self._settings, job_id())
        if not self._started.ok:
            raise MPILXError(f"no Dask cluster for this MPI job: {self._started.problem}")
        self.security = security_for(self._started.tls)
        self.name = f"MPI job {self._started.job_id}"
        return self._started.address

    async def _connect(self, address: str) -> None:
        """Until the scheduler answers, bounded by ``timeout`` (it may start after us)."""
        deadline = time.monotonic() + self._timeout
        last: Exception | None = None
        delay = 0.2
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.scheduler_comm.identity(),
                                       max(1.0, deadline - time.monotonic()))
                return
            except (OSError, asyncio.TimeoutError) as e:
                last = e
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 1.5, 2.0)
        raise SchedulerNotFoundError(
            f"could not reach the Dask scheduler at {address} within {self._timeout:g}s "
            f"(last error: {type(last).__name__}: {last}); looked at {self._where_we_looked()}")

    async def _subscribe(self) -> None:
        """`Cluster._start`, with the pool's stream (``mpi_lx_subscribe``: one per
        subscriber, pool changes included) when the scheduler is dask-mpi-lx's."""
        name = self.name
        info = await self.scheduler_comm.mpi_lx_info()  # None: not a dask-mpi-lx scheduler
        if info is None:
            await super()._start()
        else:
            comm = await self.scheduler_comm.live_comm()
            comm.name = "MPICluster worker and pool status"
            await comm.write({"op": "mpi_lx_subscribe"})
            first = await comm.read()
            self.scheduler_info = SchedulerInfo(first["identity"])
            self._pool = PoolView.from_info(first["pool"])
            self._watch_worker_status_comm = comm
            self._watch_worker_status_task = asyncio.ensure_future(
                self._watch_worker_status(comm))
            self._cluster_info.update(await self.scheduler_comm.get_metadata(
                keys=["cluster-manager-info"], default={}))
            self._sync_cluster_info_task = asyncio.ensure_future(self._sync_cluster_info())
            for pc in self.periodic_callbacks.values():
                pc.start()
            self.status = Status.running
        self.name = name  # the scheduler's metadata may hold another attachment's name

    def _update_worker_status(self, op: str, msg: Any) -> None:
        if op == "pool":
            self._pool = PoolView.from_info(msg)
        else:
            super()._update_worker_status(op, msg)
        self._retitle()

    @property
    def parks_on_close(self) -> bool:
        """Whether `close` parks the job's workers (the Dask tab's card) or only detaches."""
        return self._park_on_close

    # ------------------------------------------------------------------ scaling
    @property
    def worker_ranks(self) -> dict[int, dict]:
        """Each worker rank's ``{"name", "host", "state"}``
        (starting/active/parking/parked/lost)."""
        ranks = self._pool.ranks if self._pool else {}
        return {r: {"name": v.name, "host": v.host, "state": v.state} for r, v in ranks.items()}

    @property
    def limit(self) -> int:
        """How many workers this allocation can run at once."""
        return self._pool.limit if self._pool else len(self.scheduler_info.get("workers", {}))

    @property
    def plan(self) -> set[str]:
        ranks = self._pool.ranks.values() if self._pool else ()
        return {v.name for v in ranks if v.state in ("active", "starting")}

    requested = plan

    def scale(self, n: int) -> Any:
        """Make ``n`` workers active (0 <= n <= `limit`); stops adaptive scaling first.
        Returns once the ranks parked or started. Raises `ScaleError` saying how many workers
        it reached and why when ``mpi-lx.attach.scale-timeout`` passed first, or a rank was
        lost or kept; warns (`ScaleWarning`) when a later scale request took over."""
        if self._adaptive is not None:
            self._adaptive.stop(reason="manual scale")
            self._adaptive = None
        return self.sync(self._scale, n)

    async def _scale(self, n: int) -> None:
        if self._pool is None:
            raise ScaleError("this scheduler was not started by dask-mpi-lx; it cannot be scaled")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ScaleError(f"cannot scale to {n!r}: give a whole number from 0 to {self.limit}")
        burst = self._burst_jobs(n)
        if burst is not None:  # burst jobs go first when scaling down, come last going up
            await burst.match(max(0, n - self.limit), await self._burst_spec(burst, n))
            n = min(n, self.limit)
        reply = PoolView.from_info(await self.scheduler_comm.mpi_lx_scale(
            n=n, timeout=attach_setting("scale-timeout")))
        self._pool = reply
        if reply.replaced:
            warnings.warn(ScaleWarning(f"scale({n}) did not finish: {reply.problem}"),
                          stacklevel=3)
            return
        await self._observe(reply.active)
        self._retitle()
        if reply.problem:
            raise ScaleError(f"reached {reply.active} of {plural_workers(n)}: {reply.problem}")

    def _burst_jobs(self, n: int) -> Any:
        """The job's `Burst` when this cluster may burst (the job's own cluster, the site
        turned it on) and either ``n`` is above the allocation or burst jobs exist."""
        if self.mode != "attach" or type(self) is not MPICluster:
            return None
        from ..jobs import burst

        if not burst_enabled():
            return None
        if self._burst is None:
            self._burst = burst.Burst(self.scheduler_comm.address)
        return self._burst

    async def _burst_spec(self, burst: Any, n: int) -> Any:
        if n <= self.limit:
            return None
        workers = list(self.scheduler_info.get("workers", {}).values())
        threads = int(workers[0].get("nthreads", 1)) if workers else 1
        memory = int(workers[0].get("memory_limit") or 2**31) if workers else 2**31
        return await burst.spec(self._pool.limit + 2 if self._pool else 4, threads, memory)

    def _own_workers(self) -> int:
        """Connected workers of this job's ranks (not of other jobs joining its scheduler)."""
        return sum(rank_of_worker(str(w.get("name"))) is not None
                   for w in self.scheduler_info["workers"].values())

    async def _observe(self, n: int, timeout: float = 5.0) -> None:
        """Until the worker stream shows ``n`` of the job's workers (it trails the pool's
        reply)."""
        deadline = time.monotonic() + timeout
        while self._own_workers() != n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def scale_down(self, workers: Any) -> Any:
        """Park the named workers (what `Adaptive` calls)."""
        return self.sync(self._park, list(workers))

    async def _park(self, names: list[str]) -> None:
        self._pool = PoolView.from_info(await self.scheduler_comm.mpi_lx_park(names=names))

    def adapt(self, minimum: int = 0, maximum: int | None = None, **kwargs: Any) -> MPIAdaptive:
        """Park idle workers and unpark them under load, between ``minimum`` and ``maximum``
        (capped at the allocation's `limit`); the interval is ``distributed.adaptive.interval``
        unless given. Returns the `Adaptive` object."""
        limit = self.limit
        if minimum is None:
            minimum = 0
        if minimum < 0 or minimum > limit:
            raise ScaleError(f"adapt minimum={minimum} is outside 0..{limit}, the worker ranks "
                             f"of this MPI job")
        if maximum is None or maximum > limit:
            maximum = limit
        if maximum < minimum:
            raise ScaleError(f"adapt maximum={maximum} is below minimum={minimum}")
        return super().adapt(Adaptive=MPIAdaptive, minimum=minimum, maximum=maximum, **kwargs)

    # ------------------------------------------------------------------ close
    async def _stop_ranks(self, reason: str) -> None:
        from ..runtime.coordinator import stop_cluster

        silent = await stop_cluster(self._channel, self._started, reason,
                                    self._settings.stop_timeout(self._channel.size))
        self._started = None
        if silent:
            logger.error("ranks %s did not stop; aborting the MPI job", silent)
            self._channel.abort(1)

    async def _park_all(self) -> None:
        """``park_on_close``: stop every worker of the job; the ranks stay for later."""
        if self._adaptive is not None:
            self._adaptive.stop(reason="cluster closed")
            self._adaptive = None
        workers = len(self.scheduler_info.get("workers", {}))
        logger.warning("%s: closing parks all %s of the job (the ranks stay; attach again "
                       "and scale to bring them back)", self.name, plural_workers(workers))
        reply = PoolView.from_info(await self.scheduler_comm.mpi_lx_scale(
            n=0, timeout=attach_setting("scale-timeout")))
        if reply.problem:
            logger.warning("%s: parking on close: %s", self.name, reply.problem)

    async def _close(self) -> None:
        if self.status == Status.closed:
            return
        try:
            if self._park_on_close and self.status == Status.running and self._pool:
                await self._park_all()
        finally:
            if self.mode == "batch" and self._started is not None:
                await self._stop_ranks("client-closed" if self.status == Status.running
                                       else "failed-start")
            if self.status in (Status.failed, Status.starting):
                self.status = Status.closing
            await super()._close()

    # ------------------------------------------------------------------ display
    @property
    def dashboard_link(self) -> str:
        """The job's dashboard link (through the user's Jupyter proxy behind a hub) for the
        job's own cluster; for any other, distributed's (``distributed.dashboard.link``)."""
        address = self.scheduler_comm.address if self.scheduler_comm else None
        if self.mode == "attach":
            link = job_dashboard_link(address)
            if link:
                return link
        return super().dashboard_link

    @property
    def title(self) -> str:
        """"MPI job <id>: <n> workers", with "on n1, n2" when the job spans several hosts:
        the Dask tab card's title."""
        hosts = self._pool.hosts if self._pool else ()
        where = f" on {', '.join(hosts)}" if len(hosts) > 1 else ""
        burst = self._burst.describe() if self._burst else ""
        where += f" + burst: {burst}" if burst else ""
        return f"{self.name}: {plural_workers(len(self.scheduler_info.get('workers', {})))}{where}"

    def _retitle(self) -> None:
        retitle(self, self.title)

    def _counts(self) -> tuple[int, int]:
        if not self._pool:
            return len(self.scheduler_info.get("workers", {})), 0
        return self._pool.count("active", "starting"), self._pool.count("parked", "parking")

    def __repr__(self) -> str:
        active, parked = self._counts()
        workers = self.scheduler_info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        hosts = self._pool.hosts if self._pool else ()
        where = f" on {hosts[0]}" if len(hosts) == 1 else ""  # several: the title names them
        return (f"MPICluster({self.title + where!r}, {self.scheduler_address!r}, "
                f"mode={self.mode}, threads={threads}, active_ranks={active}, "
                f"parked_ranks={parked})")

    def _repr_html_(self, cluster_status: Any = None) -> str:
        active, parked = self._counts()
        pool = self._pool
        rows = {
            "Job": html.escape(pool.job_id if pool else self.name),
            "Hosts": html.escape(", ".join(pool.hosts) if pool else "?"),
            "Scheduler": html.escape(self.scheduler_address),
            "Workers connected": str(len(self.scheduler_info.get("workers", {}))),
            "Worker ranks": f"{active} active, {parked} parked (of {self.limit})",
            "Mode": self.mode,
        }
        link = self.dashboard_link
        if link:
            rows["Dashboard"] = f'<a href="{html.escape(link)}" target="_blank">' \
                                f"{html.escape(link)}</a>"
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>"
                       f"{v}</td></tr>" for k, v in rows.items())
        return (f"<div><strong>MPICluster: {html.escape(self.title)}</strong>"
                f"<table>{body}</table></div>")

    # ------------------------------------------------------------------ discovery
    @classmethod
    def from_name(cls, name: str, asynchronous: bool = False) -> MPICluster:
        """Attach to this job's cluster (dask-ctl's discovery protocol)."""
        return cls(mode="attach", name=name, asynchronous=asynchronous)
