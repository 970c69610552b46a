"""Point-to-point messages between ranks without busy-waiting (the only mpi4py import).

Blocking MPI waits (recv, bcast, barrier) spin a whole core per rank in Open MPI; every
wait here polls a non-blocking matched probe and sleeps in between, so idle ranks stay idle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any, NoReturn


class Channel:
    """Send and receive pickled messages on ``MPI.COMM_WORLD`` from asyncio code."""

    def __init__(self, poll_interval: float = 0.1):
        from mpi4py import MPI  # imported here: importing this package never starts MPI

        self._mpi = MPI
        self._comm = MPI.COMM_WORLD
        self.rank: int = self._comm.Get_rank()
        self.size: int = self._comm.Get_size()
        self.poll_interval = poll_interval
        self._pending: list[Any] = []

    def send(self, dest: int, tag: int, payload: Any) -> None:
        """Start sending ``payload``; completion is checked by `flush` and later sends."""
        self._pending.append(self._comm.isend(payload, dest=dest, tag=tag))
        self._pending = [r for r in self._pending if not r.Test()]

    def try_recv(self, tag: int, source: int | None = None) -> tuple[int, Any] | None:
        """One message with ``tag`` if one has arrived, as ``(source, payload)``."""
        status = self._mpi.Status()
        src = self._mpi.ANY_SOURCE if source is None else source
        message = self._comm.improbe(source=src, tag=tag, status=status)
        if message is None:
            return None
        return status.Get_source(), message.recv()

    async def recv(
        self, tag: int, source: int | None = None, timeout: float | None = None,
        poll: float | None = None,
    ) -> tuple[int, Any] | None:
        """Wait for a message with ``tag``; None when ``timeout`` seconds pass first.
        ``poll`` overrides the sleep between checks (short while starting up)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            got = self.try_recv(tag, source)
            if got is not None:
                return got
            if deadline is not None and time.monotonic() >= deadline:
                return None
            await asyncio.sleep(self.poll_interval if poll is None else poll)

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
        dropped = 0
        while (message := self._comm.improbe(source=self._mpi.ANY_SOURCE,
                                             tag=self._mpi.ANY_TAG)) is not None:
            message.recv()
            dropped += 1
        return dropped

    def abort(self, code: int) -> None:
        """End every rank of the job now (used only when ranks stop answering)."""
        self._comm.Abort(code)
