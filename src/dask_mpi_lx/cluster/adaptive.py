"""Adaptive scaling within the allocation: idle workers are parked, not killed."""

from __future__ import annotations

import logging

from distributed.deploy.adaptive import Adaptive

from ..exceptions import ScaleError

logger = logging.getLogger(__name__)


class MPIAdaptive(Adaptive):
    """`Adaptive` whose scale-up does not cancel itself (a user's `scale()` does), logs a
    scale-up that fell short instead of ending the adaptive loop, and leaves retiring to
    the pool (`Adaptive.scale_down` retires the workers itself first, racing the pool)."""

    async def scale_down(self, workers: list[str]) -> None:
        if workers:
            logger.info("parking workers %s", workers)
            await self.cluster._park(list(workers))

    async def scale_up(self, n: int) -> None:
        try:
            await self.cluster._scale(n)
        except ScaleError as e:
            logger.warning("adaptive scale-up to %d: %s", n, e)
