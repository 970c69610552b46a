"""Errors of dask-mpi-lx: each message says what was found, what was needed and what to do."""

from __future__ import annotations

from typing import Any


class MPILXError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(MPILXError, ValueError):
    """A setting (config key, CLI flag or argument) has a bad value."""

    def __init__(self, key: str, value: Any, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}: got {value!r}, expected {expected}")


class WorldTooSmallError(MPILXError):
    """The MPI world has too few ranks for a scheduler and at least one worker."""

    def __init__(self, size: int, needed: int):
        self.size, self.needed = size, needed
        super().__init__(
            f"found {size} MPI rank(s), need at least {needed} "
            + ("(1 notebook/client + 1 scheduler + 1 worker)" if needed > 2
               else "(rank 0 + 1 worker)") + "; ask for more tasks/cores"
        )


class SchedulerNotFoundError(MPILXError):
    """MPICluster could not find or reach the job's scheduler."""


class ScaleError(MPILXError, ValueError):
    """A scale request the allocation cannot satisfy."""
