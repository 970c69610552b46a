"""Scheduler-rank side of scaling within a fixed allocation: park and unpark worker ranks.

A parked rank stays alive (the MPI job is intact) but runs no worker process, so its memory
is free. The pool answers three scheduler RPCs that `MPICluster` calls:
``mpi_lx_info``, ``mpi_lx_scale(n)`` and ``mpi_lx_park(names)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..exceptions import ScaleError
from ..mpi.channel import Channel
from .protocol import Tag
from .roles import Plan, plural_workers, rank_of_worker, worker_name

logger = logging.getLogger(__name__)


class WorkerPool:
    """Tracks each worker rank as ``active`` or ``parked`` and moves ranks between the two;
    a rank that died or failed is ``lost`` and no longer counts."""

    def __init__(self, scheduler: Any, channel: Channel, plan: Plan, job_id: str,
                 dashboard: tuple[str, int] | None):
        self.scheduler = scheduler
        self.channel = channel
        self.plan = plan
        self.job_id = job_id
        self.dashboard = dashboard
        self.wanted = {r: "active" for r in plan.worker_ranks}    # what we asked for
        self.reported = {r: "active" for r in plan.worker_ranks}  # what each rank said last
        self._unparking: set[int] = set()  # sent UNPARK, rank not yet reported active
        self.lost: set[int] = set()
        self._lock = asyncio.Lock()
        self._listeners: list[asyncio.Task] = []
        scheduler.handlers.update(
            {"mpi_lx_info": self.info, "mpi_lx_scale": self.scale, "mpi_lx_park": self.park}
        )

    def start(self) -> None:
        self._listeners = [asyncio.ensure_future(self._listen()),
                           asyncio.ensure_future(self._listen_lost())]

    async def stop(self) -> None:
        for task in self._listeners:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _mark_lost(self, ranks: list[int]) -> None:
        for r in ranks:
            if r in self.wanted and r not in self.lost:
                self.lost.add(r)
                self._unparking.discard(r)
                logger.warning("worker rank %d is lost; %s remain", r, plural_workers(self.limit))

    async def _listen_lost(self) -> None:
        while True:
            got = await self.channel.recv(Tag.LOST, source=0)
            if got is not None:
                self._mark_lost(got[1]["ranks"])

    async def _listen(self) -> None:
        while True:
            got = await self.channel.recv(Tag.STATE)
            if got is None:
                continue
            rank, msg = got
            if msg["state"] == "lost":
                self._mark_lost([rank])
                continue
            self.reported[rank] = msg["state"]
            if msg["state"] == "active":
                self._unparking.discard(rank)
            elif rank in self._unparking:
                pass  # the end of an earlier park; the rank restarts on our UNPARK next
            elif self.wanted.get(rank) == "active":
                # closed by someone else (retire_workers, client.shutdown): accept it
                self.wanted[rank] = "parked"
            elif msg["state"] == "active" and self.wanted.get(rank) == "parked":
                # it came up after we parked it: retire it again
                asyncio.ensure_future(self._retire([worker_name(rank)]))
            logger.info("worker rank %d is %s", rank, msg["state"])

    def _connected_names(self) -> set[str]:
        return {ws.name for ws in self.scheduler.workers.values()}

    def info(self) -> dict[str, Any]:
        """Job, hosts and the state of every worker rank."""
        connected = self._connected_names()
        ranks = {}
        for r in self.plan.worker_ranks:
            name = worker_name(r)
            if r in self.lost:
                state = "lost"
            elif self.wanted[r] == "parked":
                state = "parked" if self.reported[r] == "parked" else "parking"
            elif r in self._unparking or name not in connected:
                state = "starting"
            else:
                state = "active"
            ranks[r] = {"name": name, "host": self.plan.hosts[r], "state": state}
        return {
            "job_id": self.job_id,
            "hosts": sorted(set(self.plan.hosts)),
            "size": self.plan.size,
            "scheduler_rank": self.plan.scheduler_rank,
            "dashboard": list(self.dashboard) if self.dashboard else None,
            "limit": self.limit,
            "ranks": ranks,
        }

    @property
    def limit(self) -> int:
        """Worker ranks that can run a worker: all of the job's, less the lost ones."""
        return len(self.plan.worker_ranks) - len(self.lost)

    async def scale(self, n: int) -> dict[str, Any]:
        """Make ``n`` worker ranks active, parking or unparking the difference."""
        limit = self.limit
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ScaleError(f"cannot scale to {n!r} workers: give a whole number from 0 to {limit}")
        if n > limit:
            raise ScaleError(
                f"cannot scale to {n} workers: this MPI job has {limit} worker ranks "
                f"(world size {self.plan.size} minus the notebook and scheduler ranks"
                + (f", minus {len(self.lost)} lost" if self.lost else "")
                + "); start the server with more cores to get more"
            )
        async with self._lock:
            usable = [r for r in self.plan.worker_ranks if r not in self.lost]
            active = [r for r in usable if self.wanted[r] == "active"]
            parked = [r for r in usable if self.wanted[r] == "parked"]
            if n < len(active):
                names = self._choose_to_park(active, len(active) - n)
                await self._park_names(names)
            for r in parked[: max(0, n - len(active))]:
                self.wanted[r] = "active"
                self._unparking.add(r)
                self.channel.send(r, Tag.UNPARK, {})
                logger.info("unparking worker rank %d", r)
        return self.info()

    async def park(self, names: list[str]) -> dict[str, Any]:
        """Park the named workers (names as `Adaptive` passes them)."""
        async with self._lock:
            await self._park_names(list(names))
        return self.info()

    def _choose_to_park(self, active: list[int], count: int) -> list[str]:
        """Idle and least-loaded first, as the scheduler ranks them; then highest ranks."""
        active_names = [worker_name(r) for r in active]
        preferred = self.scheduler.workers_to_close(n=count, attribute="name")
        chosen = [n for n in preferred if n in active_names][:count]
        for name in reversed(active_names):
            if len(chosen) >= count:
                break
            if name not in chosen:
                chosen.append(name)
        return chosen

    async def _park_names(self, names: list[str]) -> None:
        ranks = [rank_of_worker(n) for n in names]
        ranks = [r for r in ranks if r in self.wanted and self.wanted[r] == "active"]
        if not ranks:
            return
        for r in ranks:
            self.wanted[r] = "parked"
        wanted_names = [worker_name(r) for r in ranks]
        connected = self._connected_names()
        to_retire = [n for n in wanted_names if n in connected]
        logger.info("parking worker ranks %s", ranks)
        if to_retire:
            await self._retire(to_retire)

    async def _retire(self, names: list[str]) -> None:
        if names:
            # moves their data to the other workers, then closes the worker and its nanny;
            # the rank notices and parks itself
            await self.scheduler.retire_workers(names=names, close_workers=True, remove=True)
