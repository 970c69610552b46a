"""A scheduler preload (distributed.scheduler.preload) that makes the scheduler start late,
by SLOW_START_SECONDS: a slow file system or a loaded node, as seen from the notebook."""

from __future__ import annotations

import os
import time


def dask_setup(scheduler: object) -> None:
    time.sleep(float(os.environ.get("SLOW_START_SECONDS", "8")))
