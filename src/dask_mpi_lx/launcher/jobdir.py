"""The job-private directory (0700): TLS files and the notebook's dask config, removed at the end."""

from __future__ import annotations

import getpass
import logging
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from ..exceptions import MPILXError
from .jobtls import JobTLS, write_pem_files, write_private_file

logger = logging.getLogger(__name__)

CONFIG_FILE = "dask-mpi-lx-job.yaml"


def safe_job_id(job_id: str) -> str:
    """The job id as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)


def rank_scratch_prefix(job_id: str, rank: int) -> str:
    """Name prefix of a worker rank's own spill directory (see `remove_rank_scratch`)."""
    return f"dask-mpi-lx-{safe_job_id(job_id)}-rank{rank}-"


def make_rank_scratch(parent: str | None, job_id: str, rank: int) -> str:
    """A fresh 0700 spill directory for one worker rank; `MPILXError` says what to change."""
    try:
        return tempfile.mkdtemp(prefix=rank_scratch_prefix(job_id, rank), dir=parent)
    except OSError as e:
        raise MPILXError(
            f"cannot create the worker's spill directory under {parent!r}: {e.strerror}; set "
            "mpi-lx.local-directory or mpi-lx.job-directory to a writable local directory"
        ) from e


def remove_rank_scratch(parent: str | None, job_id: str, ranks: list[int]) -> None:
    """Remove the spill directories that killed ranks on this host could not remove."""
    base = Path(parent or tempfile.gettempdir())
    for rank in ranks:
        for path in base.glob(rank_scratch_prefix(job_id, rank) + "*"):
            if path.is_dir() and not path.is_symlink() and path.owner() == getpass.getuser():
                shutil.rmtree(path, ignore_errors=True)


class JobDirectory:
    """A fresh, unguessable, owner-only directory for one job on one host."""

    def __init__(self, parent: str, job_id: str, label: str = "job"):
        safe_id = safe_job_id(job_id)
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f"dask-mpi-lx-{safe_id}-{label}-", dir=parent))
        except OSError as e:
            raise MPILXError(
                f"cannot create the job directory under {parent!r}: {e.strerror}; "
                "set mpi-lx.job-directory (--job-directory) to a writable local directory"
            ) from e
        self.path.chmod(0o700)

    @property
    def dask_config_dir(self) -> Path:
        """What the notebook's ``DASK_CONFIG`` points at."""
        return self.path / "dask"

    def write_tls(self, tls: JobTLS) -> dict[str, str]:
        tls_dir = self.path / "tls"
        tls_dir.mkdir(mode=0o700)
        return write_pem_files(tls, tls_dir)

    def write_dask_config(self, config: dict) -> Path:
        self.dask_config_dir.mkdir(mode=0o700, exist_ok=True)
        path = self.dask_config_dir / CONFIG_FILE
        write_private_file(path, yaml.safe_dump(config, sort_keys=False))
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():
            logger.warning("could not remove job directory %s", self.path)
