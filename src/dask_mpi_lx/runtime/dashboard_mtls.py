"""A job cluster's dashboard on the compute node's network, answering only clients that
present the cluster's certificate (mutual TLS).

distributed's own dashboard TLS (``distributed.scheduler.dashboard.tls``) encrypts but asks
no client certificate, so anyone who reaches the node's port gets the page. Here the same
HTTP server keeps its TCP listener and every connection must first complete a TLS
handshake in which the client proves it holds the cluster's key: the owner's Jupyter server
(`dask_mpi_lx.jobs.dashboard_bridge`) does; another user cannot.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from typing import Any

from .tls import JobTLS, write_pem_files

logger = logging.getLogger(__name__)


def server_context(tls: JobTLS, scratch: str) -> ssl.SSLContext:
    """A server-side context that requires a client certificate signed by the cluster's
    certificate. The key passes through 0600 files in ``scratch`` (`ssl` loads a key only
    from a file), removed at once."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        paths = write_pem_files(tls, _private(tmp))
        ctx.load_cert_chain(paths["cert"], paths["key"])
    ctx.load_verify_locations(cadata=tls.cert_pem)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(tls: JobTLS, scratch: str) -> ssl.SSLContext:
    """The matching client side: presents the cluster's certificate and trusts only it (its
    name is ``dask-internal``, not the node's, so no host name check)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=tls.cert_pem)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        paths = write_pem_files(tls, _private(tmp))
        ctx.load_cert_chain(paths["cert"], paths["key"])
    return ctx


def _private(path: str) -> Any:
    from pathlib import Path

    os.chmod(path, 0o700)
    return Path(path)


def require_client_certificate(http_server: Any, tls: JobTLS, scratch: str) -> None:
    """Make ``http_server`` (tornado, listening, nothing accepted yet) wrap every new
    connection in TLS that requires the cluster's client certificate."""
    http_server.ssl_options = server_context(tls, scratch)
    logger.info("dashboard: TLS with the cluster's client certificate required")
