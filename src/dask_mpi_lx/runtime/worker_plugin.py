"""A worker plugin that lets the worker's last heartbeat finish before the worker closes.

`distributed.Worker.close` stops its periodic callbacks (which does not cancel one already
running) and then closes its connection pool, aborting every comm in use. A heartbeat in
flight at that moment fails with ``CommClosedError`` and the worker logs "Failed to
communicate with scheduler during heartbeat" at ERROR with a traceback, although the
scheduler is up and nothing is wrong. With many oversubscribed workers the scheduler
answers slowly and a heartbeat is often in flight when the job stops. Plugins are torn down
early in ``close`` (before the pool is closed): this one stops the heartbeat there and
waits, bounded, for the one in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

from distributed import WorkerPlugin

HEARTBEAT_DRAIN_TIMEOUT = 5.0  # seconds at most that a closing worker waits for its heartbeat


class DrainHeartbeat(WorkerPlugin):
    name = "dask-mpi-lx-drain-heartbeat"

    def __init__(self, timeout: float = HEARTBEAT_DRAIN_TIMEOUT):
        self.timeout = timeout
        self._beat: asyncio.Future | None = None

    def setup(self, worker: Any) -> None:
        pc = worker.periodic_callbacks.get("heartbeat")
        if pc is None:
            return
        beat = pc.callback

        def tracked() -> asyncio.Future:
            self._beat = asyncio.ensure_future(beat())
            return self._beat

        pc.callback = tracked

    async def teardown(self, worker: Any) -> None:
        pc = worker.periodic_callbacks.get("heartbeat")
        if pc is not None:
            pc.stop()
        if self._beat is not None and not self._beat.done():
            await asyncio.wait({self._beat}, timeout=self.timeout)

    def __getstate__(self) -> dict:  # sent to the worker process before any heartbeat
        return {"timeout": self.timeout, "_beat": None}
