"""Adaptive scaling within the allocation: idle workers are parked, not killed."""

from __future__ import annotations

from distributed.deploy.adaptive import Adaptive


class MPIAdaptive(Adaptive):
    """`Adaptive` whose scale-up does not cancel itself (a user's `scale()` does)."""

    async def scale_up(self, n: int) -> None:
        await self.cluster._scale(n)
