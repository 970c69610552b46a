"""A cluster's private directory on the shared home file system (0700): the TLS keys a
client made for its jobs (0600) and the scheduler's contact, written by the first job.

This is how keys reach a batch job without passing through argv or the job's environment,
which ``scontrol show job`` and ``qstat -f`` show: only the directory's path travels, and
only its owner can read what is in it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..exceptions import MPILXError
from .tls import JobTLS, write_private_file

CONTACT_FILE = "scheduler.yaml"
SHAPE_FILE = "jobs.yaml"  # the jobs' shape, for a later attach by name
CERT_FILE, KEY_FILE = "tls/job-cert.pem", "tls/job-key.pem"
DASK_TAB_FILE = "made-by-dask-tab"  # a Dask tab (NEW) made it: its server lists it again


@dataclass(frozen=True)
class Contact:
    """Where the cluster's scheduler listens, as the job that runs it wrote it."""

    job_id: str
    address: str
    hosts: tuple[str, ...] = ()
    dashboard: str = ""  # "host:port", mutual TLS with the cluster's keys; "" for none


def _check_private(path: Path, mode_mask: int = 0o077) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise MPILXError(f"{path} is a symbolic link; a cluster's files must be plain and private")
    if st.st_uid != os.getuid():
        raise MPILXError(f"{path} belongs to uid {st.st_uid}, not to you ({os.getuid()})")
    if st.st_mode & mode_mask:
        raise MPILXError(f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                         "a cluster's keys must be yours alone")


class ClusterDir:
    """One cluster's directory: made by the client, read by the cluster's batch jobs."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def create(cls, parent: str | os.PathLike, name: str, tls: JobTLS | None) -> ClusterDir:
        """Make ``parent/name`` (0700, parents 0700) and write the keys (0600)."""
        base = Path(os.path.expanduser(str(parent)))
        path = base / name
        try:
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private(base, 0o022)  # others must not be able to swap our directory
            path.mkdir(mode=0o700)
        except OSError as e:
            raise MPILXError(f"cannot create the cluster directory under {base}: {e.strerror or e}; "
                             "set mpi-lx.jobs.directory to a private directory the nodes see"
                             ) from e
        directory = cls(path)
        try:
            (path / "tls").mkdir(mode=0o700)
            if tls is not None:
                write_private_file(path / CERT_FILE, tls.cert_pem)
                write_private_file(path / KEY_FILE, tls.key_pem)
        except BaseException as e:  # a half-made directory (a key, no cert) must not stay
            directory.remove()
            if isinstance(e, OSError):
                raise MPILXError(f"cannot write the cluster's keys in {path}: "
                                 f"{e.strerror or e}") from e
            raise
        return directory

    def check(self) -> None:
        """Refuse a directory another user could read or replace."""
        if not self.path.is_dir():
            raise MPILXError(f"no cluster directory at {self.path}")
        _check_private(self.path)

    def load_tls(self) -> JobTLS | None:
        """The cluster's keys, None when it runs without TLS (no key file)."""
        self.check()
        key = self.path / KEY_FILE
        if not key.exists():
            return None
        _check_private(key)
        return JobTLS(cert_pem=(self.path / CERT_FILE).read_text(), key_pem=key.read_text())

    def write_contact(self, contact: Contact) -> None:
        """Atomically (a reader never sees half a file), readable by the owner only."""
        tmp = self.path / f".{CONTACT_FILE}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        data = asdict(contact)
        data["hosts"] = list(contact.hosts)
        write_private_file(tmp, yaml.safe_dump(data, sort_keys=False))
        os.replace(tmp, self.path / CONTACT_FILE)

    def write_shape(self, shape: dict) -> None:
        """The jobs' shape (plain values), readable by the owner only."""
        write_private_file(self.path / SHAPE_FILE, yaml.safe_dump(shape, sort_keys=False))

    def read_shape(self) -> dict | None:
        """What `write_shape` wrote; None if nothing (or nothing readable) is there."""
        try:
            data = yaml.safe_load((self.path / SHAPE_FILE).read_text())
        except (FileNotFoundError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None

    def mark_made_by_dask_tab(self) -> None:
        write_private_file(self.path / DASK_TAB_FILE, "")

    def made_by_dask_tab(self) -> bool:
        return (self.path / DASK_TAB_FILE).is_file()

    def read_contact(self) -> Contact | None:
        try:
            data = yaml.safe_load((self.path / CONTACT_FILE).read_text())
        except FileNotFoundError:
            return None
        if not isinstance(data, dict) or not data.get("address"):
            return None
        return Contact(job_id=str(data.get("job_id", "?")), address=str(data["address"]),
                       hosts=tuple(data.get("hosts") or ()),
                       dashboard=str(data.get("dashboard") or ""))

    def remove_contact(self, job_id: str) -> None:
        """Remove the contact if it is ``job_id``'s (its scheduler is ending)."""
        contact = self.read_contact()
        if contact is not None and contact.job_id == job_id:
            (self.path / CONTACT_FILE).unlink(missing_ok=True)

    def remove(self) -> None:
        import shutil

        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path, ignore_errors=True)
