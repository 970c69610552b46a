"""Point-to-point messages between ranks without busy-waiting (the only mpi4py import).

Blocking MPI waits (recv, bcast, barrier) spin a whole core per rank in Open MPI; every
wait here polls a non-blocking matched probe and sleeps in between, so idle ranks stay idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from typing import Any, NoReturn


class Channel:
    """Send and receive pickled messages on ``MPI.COMM_WORLD`` from asyncio code.

    One receiver per rank: every message that has arrived, whatever its tag, moves from MPI
    into an inbox in arrival order (`_receive_arrived`), and each waiter takes the first one
    that matches its tag and source. While anyone waits, one pump task polls MPI and wakes
    the waiters; nobody else probes.
    """

    def __init__(self, poll_interval: float = 0.1):
        from mpi4py import MPI  # imported here: importing this package never starts MPI

        self._mpi = MPI
        self._comm = MPI.COMM_WORLD
        self.rank: int = self._comm.Get_rank()
        self.size: int = self._comm.Get_size()
        self.poll_interval = poll_interval
        self._pending: list[Any] = []
        self._inbox: list[tuple[int, int, Any]] = []  # (source, tag, payload)
        self._polls: list[float] = []  # the poll interval of each current waiter
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None
        self._pump: asyncio.Task | None = None

    def send(self, dest: int, tag: int, payload: Any) -> None:
        """Start sending ``payload``; completion is checked by `flush` and later sends."""
        self._pending.append(self._comm.isend(payload, dest=dest, tag=tag))
        self._pending = [r for r in self._pending if not r.Test()]

    # ------------------------------------------------------------------ receiving
    def _receive_arrived(self) -> bool:
        """Move every message that has arrived into the inbox; True if there was one."""
        status = self._mpi.Status()
        got = False
        while (message := self._comm.improbe(source=self._mpi.ANY_SOURCE,
                                             tag=self._mpi.ANY_TAG, status=status)) is not None:
            self._inbox.append((status.Get_source(), status.Get_tag(), message.recv()))
            got = True
        if got and self._arrived is not None:
            self._wake()
        return got

    def _take(self, tag: int, source: int | None) -> tuple[int, Any] | None:
        for i, (src, t, payload) in enumerate(self._inbox):
            if t == tag and (source is None or src == source):
                del self._inbox[i]
                return src, payload
        return None

    def _wake(self) -> None:
        """Wake every waiter (each holds the event that was current when it looked)."""
        woken, self._arrived = self._arrived, asyncio.Event()
        woken.set()

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new asyncio.run: start afresh on this loop
            self._loop, self._arrived, self._pump = loop, asyncio.Event(), None

    async def _run_pump(self) -> None:
        while self._polls:
            self._receive_arrived()
            await asyncio.sleep(min(self._polls))

    def try_recv(self, tag: int, source: int | None = None) -> tuple[int, Any] | None:
        """One message with ``tag`` if one has arrived, as ``(source, payload)``."""
        self._receive_arrived()
        return self._take(tag, source)

    async def recv(
        self, tag: int, source: int | None = None, timeout: float | None = None,
        poll: float | None = None,
    ) -> tuple[int, Any] | None:
        """Wait for a message with ``tag``; None when ``timeout`` seconds pass first.
        ``poll`` overrides the sleep between checks (short while starting up)."""
        self._bind_loop()
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = self.poll_interval if poll is None else poll
        self._polls.append(interval)
        try:
            while True:
                arrived = self._arrived
                assert arrived is not None
                got = self.try_recv(tag, source)
                if got is not None:
                    return got
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                if self._pump is None or self._pump.done():
                    self._pump = asyncio.ensure_future(self._run_pump())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(arrived.wait(), remaining)
        finally:
            self._polls.remove(interval)

    async def flush(self, timeout: float) -> bool:
        """Wait until every started send completed; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self._pending:
            self._pending = [r for r in self._pending if not r.Test()]
            if not self._pending:
                break
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(min(self.poll_interval, 0.05))
        return True

    def exit(self, code: int, finalize: bool) -> NoReturn:
        """End this process. With ``finalize``: drop unread messages, then MPI_Finalize
        (MPICH fails it on unmatched messages, and Hydra then kills the whole job). Without:
        skip MPI_Finalize, whose fence would wait for a dead rank forever (Open MPI under
        --enable-recovery)."""
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        if finalize:
            if not self._mpi.Is_finalized():
                self.drain()
                self._mpi.Finalize()
            sys.exit(code)
        os._exit(code)

    def drain(self) -> int:
        """Receive and drop every message that has arrived but was never asked for (a
        WELCOME overtaken by STOP, say): MPICH's MPI_Finalize fails on unmatched ones."""
        self._receive_arrived()
        dropped, self._inbox = len(self._inbox), []
        return dropped

    def abort(self, code: int) -> None:
        """End every rank of the job now (used only when ranks stop answering)."""
        self._comm.Abort(code)
