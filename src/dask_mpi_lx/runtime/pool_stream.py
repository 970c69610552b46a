"""Scheduler side of ``mpi_lx_subscribe``: the worker-status stream of `Cluster`, for any
number of subscribers, plus the pool's state on every change.

distributed's ``subscribe_worker_status`` registers one plugin under a fixed name, so a
second attached cluster (the Dask tab's and a notebook's) silently takes the first one's
stream. Each subscriber here gets its own plugin. Messages are the same batches of
``(op, msg)`` that `Cluster._watch_worker_status` reads: ``("add", {"workers": ...})``,
``("remove", address)``, and ``("pool", info)`` with `WorkerPool.info`'s dict.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from distributed.batched import BatchedSend
from distributed.comm.core import CommClosedError
from distributed.diagnostics.plugin import SchedulerPlugin

_ids = itertools.count()


class PoolStatusPlugin(SchedulerPlugin):
    """One subscriber's stream."""

    def __init__(self, scheduler: Any, comm: Any, on_close: Callable[[PoolStatusPlugin], None]):
        self.name = f"mpi-lx-status-{next(_ids)}"
        self.scheduler = scheduler
        self.on_close = on_close
        self.bcomm = BatchedSend(interval="5ms")
        self.bcomm.start(comm)
        scheduler.add_plugin(self, name=self.name)

    def send(self, op: str, msg: Any) -> None:
        try:
            self.bcomm.send([op, msg])
        except CommClosedError:
            self.unsubscribe()

    def closed(self) -> bool:
        """Whether the subscriber's connection is gone (its process may have died quietly)."""
        comm = self.bcomm.comm
        return comm is None or comm.closed()

    def unsubscribe(self) -> None:
        """The subscriber went away: stop sending. (Not `close`: that name is the plugin
        hook the scheduler awaits when it closes.)"""
        self.scheduler.plugins.pop(self.name, None)
        self.on_close(self)
        self.bcomm.abort()

    def add_worker(self, scheduler: Any, worker: str) -> None:
        self.send("add", {"workers": {worker: _identity(scheduler.workers[worker])}})

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        self.send("remove", worker)

    def teardown(self) -> None:
        self.bcomm.close()


def _identity(ws: Any) -> dict:
    ident = ws.identity()
    ident.pop("metrics", None)
    ident.pop("last_seen", None)
    return ident


def scheduler_identity(scheduler: Any) -> dict:
    """`Scheduler.identity` as `subscribe_worker_status` returns it."""
    ident = scheduler.identity()
    for v in ident["workers"].values():
        v.pop("metrics", None)
        v.pop("last_seen", None)
    return ident
