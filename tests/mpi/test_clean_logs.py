"""A busy job of many oversubscribed workers (where timing races show first) prints no
error, exception or traceback line from start to stop: computing, parking all but one
worker, bringing them back, and stopping with every worker running."""

from __future__ import annotations

import re

import pytest

from tests.mpi.test_mpicluster import scenario

pytestmark = pytest.mark.mpi

ERROR_LINE = re.compile(r"Traceback|\bERROR\b|Error:|Exception", re.IGNORECASE)
WORKERS = 16


def test_many_workers_compute_park_return_and_stop_without_an_error_line(dask_mpi_lx_cmd,
                                                                         tmp_path):
    logs: list[str] = []
    out = scenario("busy_cycle", dask_mpi_lx_cmd, tmp_path, np=WORKERS + 2, logs=logs)
    assert out["limit"] == WORKERS
    assert out["sizes"] == [WORKERS, 1, WORKERS]
    assert out["sums"] == [2000.0 ** 3] * 2
    errors = [line for line in logs[0].splitlines() if ERROR_LINE.search(line)]
    assert errors == [], "\n".join(errors[:40])
