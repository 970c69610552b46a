"""Logging where every line says which rank, role and host wrote it."""

from __future__ import annotations

import logging
import socket
import sys

FORMAT = "%(asctime)s dask-mpi-lx[%(where)s] %(name)s %(levelname)s: %(message)s"


class RankContext(logging.Filter):
    """Adds ``where`` ("rank 2/4 worker @node1") to every record; the role can change later."""

    def __init__(self, rank: int, size: int, role: str = "starting"):
        super().__init__()
        self.rank, self.size, self.role = rank, size, role
        self.host = socket.gethostname()

    def filter(self, record: logging.LogRecord) -> bool:
        record.where = f"rank {self.rank}/{self.size} {self.role} @{self.host}"
        return True


def configure(context: RankContext, level: int = logging.INFO) -> None:
    """Route our logs and distributed's through one stderr handler with rank context."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(context)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("dask_mpi_lx").setLevel(level)
    for name in ("distributed", "dask"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
        logger.setLevel(level)
