"""`MPICluster`: a `distributed` Cluster for the Dask part of an MPI job."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import time
import weakref
from typing import Any, ClassVar

import dask.config
from distributed.core import Status, rpc
from distributed.deploy.cluster import Cluster
from distributed.objects import SchedulerInfo
from distributed.security import Security

from ..config import attach_setting
from ..exceptions import MPILXError, ScaleError, SchedulerNotFoundError
from .adaptive import MPIAdaptive
from .dashboard import dashboard_link

logger = logging.getLogger(__name__)

EMPTY_INFO = {"workers": {}, "services": {}}


class MPICluster(Cluster):
    """The Dask cluster of an MPI job, as a `distributed.deploy.Cluster`.

    Two modes, one implementation:

    * **attach** (inside a job started by ``dask-mpi-lx launch``, e.g. a notebook or the
      Dask tab): finds the job's scheduler from the dask config and environment the launcher
      set, retrying until it answers. ``close()`` only detaches.
    * **batch** (a script run as ``mpirun -np N python script.py``): rank 0 runs the script,
      the other ranks become the scheduler and workers inside the constructor and exit when
      rank 0 closes the cluster. ``close()`` stops every rank.

    The mode is ``batch`` when this process is one of several MPI ranks, else ``attach``.

    Scaling stays within the allocation: ``scale(n)`` parks or unparks worker ranks (a parked
    rank stays alive with its worker process stopped), and ``adapt()`` does the same
    automatically.

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
    mode : {"attach", "batch"}, optional
        Force a mode instead of detecting it.
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
        mode: str | None = None,
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
        self._channel = None
        self._started = None
        if mode == "batch":
            self._setup_batch(settings)
        self._address = address
        self.security = security or Security()
        self._timeout = attach_setting("timeout") if timeout is None else float(
            dask.utils.parse_timedelta(timeout))
        self._exclusive = exclusive
        self._pool: dict | None = None
        self._refresh_task: asyncio.Task | None = None
        job = dask.config.get("mpi-lx.job", default=None) or {}
        super().__init__(asynchronous=asynchronous, loop=loop,
                         name=name or f"MPI job {job.get('id', '?')}")
        self._loop_runner.start()
        if not self.asynchronous:
            self.sync(self._start)

    # ------------------------------------------------------------------ start
    def _setup_batch(self, settings: dict) -> None:
        from ..config import resolve
        from ..mpi.channel import Channel
        from .batch import serve_and_exit

        channel = Channel()
        if channel.rank != 0:
            serve_and_exit(channel)  # never returns
        self._settings = resolve(**settings)
        channel.poll_interval = self._settings.poll_interval
        self._channel = channel

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

    async def _start(self) -> None:
        if self.status != Status.created:
            return
        self.status = Status.starting
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
        except BaseException:
            self.status = Status.failed
            if self.mode == "batch" and self._started is not None:
                await self._stop_ranks("failed-start")
            raise
        if self._exclusive:
            self._attached[address] = self
        self._refresh_task = asyncio.ensure_future(self._refresh_loop())
        self.status = Status.running

    async def _find(self) -> str:
        address = self._address or dask.config.get("scheduler-address", default=None)
        if not address:
            raise SchedulerNotFoundError(
                "no Dask scheduler address for this job; looked at " + self._where_we_looked()
                + ". Start the job with `dask-mpi-lx launch`, or pass the address.")
        return address

    async def _start_batch(self) -> str:
        from ..launcher.coordinator import start_cluster
        from ..launcher.jobtls import security_for
        from ..mpi.environ import job_id

        self._started = await start_cluster(self._channel, self._settings, job_id())
        if not self._started.ok:
            raise MPILXError(f"no Dask cluster for this MPI job: {self._started.problem}")
        self.security = security_for(self._started.tls)
        self.name = f"MPI job {self._started.job_id}"
        return self._started.address

    async def _connect(self, address: str) -> None:
        deadline = time.monotonic() + self._timeout
        last: Exception | None = None
        delay = 0.2
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._refresh(), max(1.0, deadline - time.monotonic()))
                return
            except (OSError, asyncio.TimeoutError) as e:
                last = e
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 1.5, 2.0)
        raise SchedulerNotFoundError(
            f"could not reach the Dask scheduler at {address} within {self._timeout:g}s "
            f"(last error: {type(last).__name__}: {last}); looked at {self._where_we_looked()}")

    async def _refresh(self) -> None:
        info = SchedulerInfo(await self.scheduler_comm.identity())
        with contextlib.suppress(Exception):
            self._pool = await self.scheduler_comm.mpi_lx_info()
        self.scheduler_info = info

    async def _refresh_loop(self) -> None:
        interval = attach_setting("refresh-interval")
        failures = 0
        while self.status == Status.running:
            await asyncio.sleep(interval)
            try:
                await self._refresh()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self.scheduler_info = SchedulerInfo(dict(EMPTY_INFO))
                if failures == 3:
                    logger.warning("lost the scheduler at %s; retrying", self.scheduler_address)

    # ------------------------------------------------------------------ scaling
    @property
    def worker_ranks(self) -> dict[int, dict]:
        """Each worker rank's ``{"name", "host", "state"}`` (active/starting/parking/parked)."""
        return {int(r): v for r, v in (self._pool or {}).get("ranks", {}).items()}

    @property
    def limit(self) -> int:
        """How many workers this allocation can run at once."""
        return (self._pool or {}).get("limit", len(self.scheduler_info.get("workers", {})))

    @property
    def plan(self) -> set[str]:
        return {v["name"] for v in self.worker_ranks.values() if v["state"] in ("active", "starting")}

    requested = plan

    def scale(self, n: int) -> Any:
        """Make ``n`` workers active (0 <= n <= `limit`); stops adaptive scaling first."""
        if self._adaptive is not None:
            self._adaptive.stop(reason="manual scale")
            self._adaptive = None
        return self.sync(self._scale, n)

    async def _scale(self, n: int) -> None:
        if self._pool is None:
            raise ScaleError("this scheduler was not started by dask-mpi-lx; it cannot be scaled")
        if isinstance(n, bool) or not isinstance(n, int):
            raise ScaleError(f"cannot scale to {n!r}: give a whole number from 0 to {self.limit}")
        self._pool = await self.scheduler_comm.mpi_lx_scale(n=n)
        await self._settle(n)

    def _settled(self, n: int) -> bool:
        states = {v["state"] for v in self.worker_ranks.values()}
        return len(self.scheduler_info["workers"]) == n and states <= {"active", "parked", "lost"}

    async def _settle(self, n: int, timeout: float = 20.0) -> None:
        """Until ``n`` workers are connected and every rank finished parking or starting."""
        deadline = time.monotonic() + timeout
        await self._refresh()
        while not self._settled(n) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            await self._refresh()

    def scale_down(self, workers: Any) -> Any:
        """Park the named workers (what `Adaptive` calls)."""
        return self.sync(self._park, list(workers))

    async def _park(self, names: list[str]) -> None:
        self._pool = await self.scheduler_comm.mpi_lx_park(names=names)

    def adapt(self, minimum: int = 0, maximum: int | None = None, **kwargs: Any) -> MPIAdaptive:
        """Park idle workers and unpark them under load, between ``minimum`` and ``maximum``
        (capped at the allocation's `limit`). Returns the `Adaptive` object."""
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
        kwargs.setdefault("interval", "1s")
        return super().adapt(Adaptive=MPIAdaptive, minimum=minimum, maximum=maximum, **kwargs)

    # ------------------------------------------------------------------ close
    async def _stop_ranks(self, reason: str) -> None:
        from ..launcher.coordinator import stop_cluster

        silent = await stop_cluster(self._channel, self._started, reason,
                                    self._settings.stop_timeout(self._channel.size))
        self._started = None
        if silent:
            logger.error("ranks %s did not stop; aborting the MPI job", silent)
            self._channel.abort(1)

    async def _close(self) -> None:
        if self.status == Status.closed:
            return
        if self._refresh_task:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh_task
        if self.mode == "batch" and self._started is not None:
            await self._stop_ranks("client-closed")
        if self.status == Status.failed:
            self.status = Status.closing
        await super()._close()

    # ------------------------------------------------------------------ display
    @property
    def dashboard_link(self) -> str:
        """The dashboard through the user's Jupyter proxy behind a hub; never raises."""
        try:
            port = self.scheduler_info.get("services", {}).get("dashboard")
            dash = (self._pool or {}).get("dashboard")
            host = dash[0] if dash else self.scheduler_address.split("://")[-1].rsplit(":", 1)[0]
            return dashboard_link(host, port)
        except Exception:
            return ""

    def _counts(self) -> tuple[int, int]:
        states = [v["state"] for v in self.worker_ranks.values()]
        parked = sum(s in ("parked", "parking") for s in states)
        return len(states) - parked, parked

    def __repr__(self) -> str:
        active, parked = self._counts()
        workers = self.scheduler_info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        return (f"MPICluster({self.name!r}, {self.scheduler_address!r}, mode={self.mode}, "
                f"workers={len(workers)}, active_ranks={active}, parked_ranks={parked}, "
                f"threads={threads})")

    def _repr_html_(self, cluster_status: Any = None) -> str:
        active, parked = self._counts()
        pool = self._pool or {}
        rows = {
            "Job": html.escape(str(pool.get("job_id", self.name))),
            "Hosts": html.escape(", ".join(pool.get("hosts", [])) or "?"),
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
        return f"<div><strong>MPICluster</strong><table>{body}</table></div>"

    # ------------------------------------------------------------------ discovery
    @classmethod
    def from_name(cls, name: str, asynchronous: bool = False) -> MPICluster:
        """Attach to this job's cluster (dask-ctl's discovery protocol)."""
        return cls(mode="attach", name=name, asynchronous=asynchronous)
