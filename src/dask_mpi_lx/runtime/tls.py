"""Per-job TLS material: made once on rank 0, kept in memory on the Dask ranks.

Rank 0 never imports `distributed`: only the Dask ranks turn the keys into a `Security`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed.security import Security


@dataclass(frozen=True)
class JobTLS:
    """A self-signed certificate and key shared by every role of one job."""

    cert_pem: str
    key_pem: str

    def __repr__(self) -> str:  # never print key material
        return "JobTLS(<redacted>)"


def new_job_tls() -> JobTLS:
    """Fresh keys for one job: a self-signed ECDSA P-256 certificate (CN/SAN
    ``dask-internal``, as distributed's `Security.temporary` names it), made in well under
    a millisecond, so rank 0 hands out keys without delaying the notebook."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("dask-internal")]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return JobTLS(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode(),
    )


def security_for(tls: JobTLS | None) -> Security:
    """An in-memory `Security` requiring encryption; or plain TCP when ``tls`` is None."""
    from distributed.security import Security

    if tls is None:
        return Security(require_encryption=False)
    roles = {
        f"tls_{role}_{part}": value
        for role in ("client", "scheduler", "worker")
        for part, value in (("cert", tls.cert_pem), ("key", tls.key_pem))
    }
    return Security(require_encryption=True, tls_ca_file=tls.cert_pem, **roles)


def write_private_file(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (0600) and write ``text``; never follow links."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_pem_files(tls: JobTLS, directory: Path) -> dict[str, str]:
    """Write the certificate and key as 0600 files in ``directory``; return their paths."""
    paths = {}
    for name, text in (("cert", tls.cert_pem), ("key", tls.key_pem)):
        path = directory / f"job-{name}.pem"
        write_private_file(path, text)
        paths[name] = str(path)
    return paths


def tls_config(paths: dict[str, str]) -> dict:
    """The `distributed.comm` config that makes a bare `Client()` use the job's keys."""
    per_role = {"cert": paths["cert"], "key": paths["key"]}
    return {
        "require-encryption": True,
        "tls": {
            "ca-file": paths["cert"],
            "client": dict(per_role),
            "scheduler": dict(per_role),
            "worker": dict(per_role),
        },
    }
