"""Scheduler-rank side of scaling within a fixed allocation: park and unpark worker ranks.

A parked rank stays alive (the MPI job is intact) but runs no worker process, so its memory
is free. The pool answers the scheduler RPCs that `MPICluster` calls: ``mpi_lx_info``,
``mpi_lx_scale(n, timeout)``, ``mpi_lx_park(names)`` and the stream ``mpi_lx_subscribe``
(`pool_stream`: workers and pool state, pushed on every change). The decisions
are `pool_state.PoolState`'s; this module only feeds it the rank reports and carries out
its actions over MPI and on the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..exceptions import ScaleError
from ..mpi.channel import Channel
from .pool_state import Action, PoolState, Retire, Unpark
from .protocol import Expired, Lease, ParkRequest, RankState, StateReport, Tag, UnparkRequest
from .roles import Plan, plural_workers, rank_of_worker

logger = logging.getLogger(__name__)


class WorkerPool:
    """Moves worker ranks between running a worker and parked, as `PoolState` decides."""

    def __init__(self, scheduler: Any, channel: Channel, plan: Plan, job_id: str,
                 dashboard: tuple[str, int] | None, lease: Lease | None = None):
        self.scheduler = scheduler
        self.lease = lease
        self.channel = channel
        self.plan = plan
        self.job_id = job_id
        self.dashboard = dashboard
        self.state = PoolState.start(plan.worker_ranks)
        self._changed = asyncio.Event()  # set (and replaced) on every transition
        self._tasks: set[asyncio.Task] = set()
        self._listeners: list[asyncio.Task] = []
        self._subscribers: set[Any] = set()  # pool_stream.PoolStatusPlugin
        scheduler.handlers.update(
            {"mpi_lx_info": self.info, "mpi_lx_scale": self.scale, "mpi_lx_park": self.park,
             "mpi_lx_subscribe": self.subscribe}
        )

    def start(self) -> None:
        self._listeners = [asyncio.ensure_future(self._listen()),
                           asyncio.ensure_future(self._listen_lost())]
        if self.lease:
            self._listeners.append(asyncio.ensure_future(self._keep_lease(self.lease)))

    async def stop(self) -> None:
        for task in [*self._listeners, *self._tasks]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def limit(self) -> int:
        """Worker ranks that can run a worker: all of the job's, less the lost ones."""
        return self.state.limit

    def _attached(self) -> int:
        """Subscribers (cluster objects) whose connection is still open."""
        for sub in list(self._subscribers):
            if sub.closed():
                sub.unsubscribe()
        return len(self._subscribers)

    async def _keep_lease(self, lease: Lease) -> None:
        """`dask-mpi-lx serve`: once no cluster object has been attached for the lease's
        ``idle`` seconds (its kernel was killed), or none came within ``first_attach``, tell
        rank 0 to end the job, so that nothing runs until walltime for nobody."""
        loop = asyncio.get_running_loop()
        alone_since, limit = loop.time(), lease.first_attach
        why = f"no cluster object attached within {lease.first_attach:g}s of the start"
        while True:
            await asyncio.sleep(min(1.0, lease.idle / 4))
            if self._attached():
                alone_since, limit = loop.time(), lease.idle
                why = f"no cluster object attached for {lease.idle:g}s"
            elif loop.time() - alone_since >= limit:
                logger.warning("%s (its process ended?): ending job %s", why, self.job_id)
                self.channel.send(0, Tag.EXPIRED, Expired(why))
                return

    # ------------------------------------------------------------------ rank reports
    async def _listen_lost(self) -> None:
        while True:
            got = await self.channel.recv(Tag.LOST, source=0)
            if got is not None:
                ranks = list(got[1].ranks)
                self._apply(self.state.lost(ranks, self._park_order))
                for r in ranks:
                    logger.warning("worker rank %d (%s) is lost: its process died; %s remain", r,
                                   self._host(r), plural_workers(self.limit))

    async def _listen(self) -> None:
        while True:
            got = await self.channel.recv(Tag.STATE)
            if got is None:
                continue
            rank, payload = got
            report = StateReport.parse(payload)
            if report.state is RankState.LOST:
                logger.warning("worker rank %d (%s) is lost%s; %s remain", rank,
                               self._host(rank), f": {report.reason}" if report.reason else "",
                               plural_workers(self.limit - 1))
            else:
                logger.info("worker rank %d is %s", rank, report.state.value)
            self._apply(self.state.report(rank, report.state, self._park_order))

    # ------------------------------------------------------------------ actions
    def _apply(self, actions: list[Action]) -> None:
        retire = [a.rank for a in actions if isinstance(a, Retire)]
        for a in actions:
            if isinstance(a, Unpark):
                self.channel.send(a.rank, Tag.UNPARK, UnparkRequest())
                logger.info("unparking worker rank %d", a.rank)
        if retire:
            logger.info("parking worker ranks %s", retire)
            task = asyncio.ensure_future(self._retire(retire))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._changed.set()
        self._changed = asyncio.Event()
        if self._subscribers:
            info = self.info()
            for sub in list(self._subscribers):
                sub.send("pool", info)

    async def _retire(self, ranks: list[int]) -> None:
        """Move their data to the other workers, then ask each rank to close its worker
        through its Nanny (the rank reports "parked" once it has). A worker the scheduler
        keeps goes back to active."""
        names = [self.plan.worker_name(r) for r in ranks]
        retired = await self.scheduler.retire_workers(names=names, close_workers=False,
                                                      remove=False)
        moved = {info.get("name") for info in (retired or {}).values()}  # data moved away
        connected = {ws.name for ws in self.scheduler.workers.values()}
        for r, name in zip(ranks, names, strict=True):
            if name in moved:
                self.channel.send(r, Tag.PARK, ParkRequest())
            elif name in connected:  # not connected: gone anyway, its report follows
                logger.warning("the scheduler did not retire %s (its data could not move); "
                               "it stays active", name)
                self._apply(self.state.retire_refused(r))

    def _park_order(self, active: list[int]) -> list[int]:
        """Idle and least-loaded first, as the scheduler ranks them."""
        names = self.scheduler.workers_to_close(n=len(active), attribute="name")
        ranks = [rank_of_worker(str(n)) for n in names]
        return [r for r in ranks if r in active]

    # ------------------------------------------------------------------ RPCs
    def info(self, request: int | None = None, problem: str = "", replaced: bool = False
             ) -> dict[str, Any]:
        """Job, hosts, the phase of every worker rank, and how a request ended: ``problem``
        says why it did not reach ``request`` workers, ``replaced`` that a later request
        took over before it finished."""
        ranks = {r: {"name": self.plan.worker_name(r), "host": self._host(r), "state": slot.phase.value}
                 for r, slot in sorted(self.state.ranks.items())}
        return {
            "job_id": self.job_id,
            "hosts": sorted(set(self.plan.hosts)),
            "size": self.plan.size,
            "scheduler_rank": self.plan.scheduler_rank,
            "dashboard": list(self.dashboard) if self.dashboard else None,
            "limit": self.limit,
            "target": self.state.target,
            "active": self.state.active,
            "request": request,
            "problem": problem,
            "replaced": replaced,
            "ranks": ranks,
        }

    def subscribe(self, comm: Any) -> dict[str, Any]:
        """Start streaming worker and pool changes on ``comm``; first the current state."""
        from .pool_stream import PoolStatusPlugin, scheduler_identity

        self._subscribers.add(PoolStatusPlugin(self.scheduler, comm, self._subscribers.discard))
        return {"identity": scheduler_identity(self.scheduler), "pool": self.info()}

    def _host(self, rank: int) -> str:
        return self.plan.hosts[rank]

    async def scale(self, n: int, timeout: float | None = None) -> dict[str, Any]:
        """Make ``n`` worker ranks active and wait (up to ``timeout`` s) until they are;
        the reply's ``problem`` says why not when they are not."""
        limit = self.limit
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ScaleError(f"cannot scale to {n!r} workers: give a whole number from 0 to {limit}")
        if n > limit:
            lost = len(self.plan.worker_ranks) - limit
            raise ScaleError(
                f"cannot scale to {n} workers: this MPI job has {limit} worker ranks "
                f"(world size {self.plan.size} minus the notebook and scheduler ranks"
                + (f", minus {lost} lost" if lost else "")
                + "); start the server with more cores to get more"
            )
        self._apply(self.state.scale(n, self._park_order))
        generation = self.state.generation
        problem = await self._until_settled(n, generation, timeout)
        return self.info(request=n, problem=problem,
                         replaced=self.state.generation != generation)

    async def _until_settled(self, n: int, generation: int, timeout: float | None) -> str:
        """Wait until no rank is parking or starting; what kept it from ``n`` workers."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.state.settled and self.state.generation == generation:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        if self.state.generation != generation:
            return f"a later request (to {plural_workers(self.state.target)}) replaced it"
        why = self.state.shortfall(n)
        if why and not self.state.settled and timeout is not None:
            why += f" after {timeout:g}s"
        return why

    async def park(self, names: list[str]) -> dict[str, Any]:
        """Park the named workers (names as `Adaptive` passes them); does not wait."""
        ranks = [r for r in (rank_of_worker(str(n)) for n in names) if r is not None]
        self._apply(self.state.park(ranks))
        return self.info()
