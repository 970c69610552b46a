"""Workers that close on purpose leave the scheduler first, so neither side logs a race.

`distributed.Worker.close` tears plugins down early, before it closes its connection pool
and its stream to the scheduler. Two races of a plain close show up as tracebacks when
many workers stop at once (oversubscribed, the scheduler answers slowly), although nothing
is wrong:

- A heartbeat in flight when the pool closes fails with ``CommClosedError``: the worker
  logs "Failed to communicate with scheduler during heartbeat" at ERROR. So the plugin's
  teardown stops the heartbeat and waits, bounded, for the one in flight.
- The scheduler learns that a worker left only when its stream closes, and then tells
  every other worker ("remove-worker"). A worker that is closing at that moment has its
  stream cut under that message, and the scheduler logs "Batched Comm Closed" with a
  traceback. So teardown then asks the scheduler to let it leave (`LEAVE_OP`): the
  scheduler removes the worker without sending it anything more, writes out what it had
  queued for it, and only then answers. The worker closes its stream after that; the
  scheduler no longer tells it about other workers leaving.

distributed's own "unregister" handler cannot do the second part: its ``close=False`` is
taken by the RPC layer (it means "close the comm after replying"), so the scheduler sends
the worker a "close" message that races the worker's own close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from distributed import WorkerPlugin

LEAVE_OP = "dask_mpi_lx_leave"
LEAVE_TIMEOUT = 5.0  # seconds at most for each step: the last heartbeat, the leave call
FLUSH_TIMEOUT = 2.0  # seconds the scheduler waits to write out what it queued for a worker


def add_leave_handler(scheduler: Any) -> None:
    """Let this scheduler's workers leave through `LEAVE_OP`."""
    async def leave(address: str, stimulus_id: str) -> str:
        stream = scheduler.stream_comms.get(address)
        result = await scheduler.remove_worker(address, stimulus_id=stimulus_id,
                                               close=False, expected=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_TIMEOUT
        while (stream is not None and stream.buffer and stream.comm is not None
               and not stream.comm.closed() and loop.time() < deadline):
            await asyncio.sleep(0.01)
        return result

    scheduler.handlers[LEAVE_OP] = leave


class LeaveCleanly(WorkerPlugin):
    """Worker side: the last heartbeat finishes, then the worker leaves the scheduler."""

    name = "dask-mpi-lx-leave-cleanly"

    def __init__(self, timeout: float = LEAVE_TIMEOUT):
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
        stream = worker.batched_stream
        if stream is None or stream.comm is None or stream.comm.closed():
            return  # the scheduler closed the stream: it is closing, or it removed us
        # "already-removed" when the scheduler retired this worker itself; a scheduler
        # that is gone or too slow leaves distributed's plain close
        with contextlib.suppress(Exception):
            await asyncio.wait_for(getattr(worker.scheduler, LEAVE_OP)(
                address=worker.contact_address,
                stimulus_id=f"dask-mpi-lx-leave-{time.time()}"), self.timeout)

    def __getstate__(self) -> dict:  # sent to the worker process before any heartbeat
        return {"timeout": self.timeout, "_beat": None}
