"""The job-private directory (0700) of `dask-mpi-lx launch`: TLS files and the notebook's
dask config, removed at the end (named and swept as `runtime/scratch.py` says)."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import yaml

from ..exceptions import MPILXError
from ..runtime.scratch import PREFIX, _sweep_quietly, owned_entries, owner_tag, safe_job_id
from ..runtime.tls import JobTLS, write_pem_files, write_private_file

logger = logging.getLogger(__name__)

CONFIG_FILE = "dask-mpi-lx-job.yaml"


class JobDirectory:
    """A fresh, unguessable, owner-only directory for one job on one host."""

    def __init__(self, parent: str | None, job_id: str, label: str = "job"):
        _sweep_quietly(parent)
        safe_id = safe_job_id(job_id)
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{safe_id}-{label}-{owner_tag()}-",
                                              dir=parent))
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

    def make_scratch(self) -> Path:
        """An owner-only directory for what Dask in the notebook's kernels spills or unpacks
        (a LocalCluster's workers, uploaded files): gone with the job, never a shared
        ``/tmp/dask-scratch-space`` that would block the next user of the node."""
        scratch = self.path / "scratch"
        scratch.mkdir(mode=0o700, exist_ok=True)
        return scratch

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
        """Remove the directory, or whatever replaced it at its path during the job."""
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)
        if self.path.exists() or self.path.is_symlink():
            logger.warning("could not remove job directory %s", self.path)


def find_job_directories(parent: str | None, job_id: str | None = None) -> list[Path]:
    """This user's job directories on this host whose rank 0 still runs, newest first; only
    those of ``job_id`` when given (for processes that did not inherit ``DASK_CONFIG``)."""
    pattern = f"{PREFIX}{safe_job_id(job_id)}-job-*" if job_id else f"{PREFIX}*-job-*"
    bases = [Path(parent)] if parent else [Path(tempfile.gettempdir()), *batch_tmpdirs(job_id)]
    found = [(st.st_mtime, path) for base in bases
             for path, st, alive in owned_entries(base, pattern)
             if alive and stat.S_ISDIR(st.st_mode) and (path / "dask" / CONFIG_FILE).is_file()]
    return [path for _, path in sorted(found, reverse=True)]


def batch_tmpdirs(job_id: str | None = None) -> list[Path]:
    """The per-job temporary directories PBS makes on this host (its jobs' $TMPDIR,
    ``$PBS_TMPDIR/pbs.<job id>``, /var/tmp by default) that this user may enter: a process
    outside the job has no $TMPDIR pointing there."""
    root = Path(os.environ.get("PBS_TMPDIR") or "/var/tmp")
    pattern = f"pbs.{job_id}.*" if job_id else "pbs.*"
    try:
        return sorted(p for p in root.glob(pattern) if p.is_dir() and os.access(p, os.X_OK))
    except OSError:
        return []


def job_of_directory(path: Path) -> str:
    """The (file-name-safe) job id in a job directory's name."""
    return path.name[len(PREFIX):].split("-job-", 1)[0]
