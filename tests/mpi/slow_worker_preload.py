"""Worker preload that makes a worker slow to start (SLOW_WORKER_SETUP seconds) or to
close (SLOW_WORKER_TEARDOWN): longer than mpirun waits between SIGTERM and SIGKILL."""

import os
import time


def dask_setup(worker):
    time.sleep(float(os.environ.get("SLOW_WORKER_SETUP", "0")))


def dask_teardown(worker):
    time.sleep(float(os.environ.get("SLOW_WORKER_TEARDOWN", "0")))
