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
import ssl
import tempfile
from pathlib import Path
from typing import Any

from .tls import JobTLS, write_pem_files

logger = logging.getLogger(__name__)


def _load_key(ctx: ssl.SSLContext, tls: JobTLS, scratch: str) -> None:
    """Load the cluster's certificate and key into ``ctx``: through 0600 files in a private
    temporary directory under ``scratch`` (`ssl` loads a key only from a file), removed at
    once."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:  # mkdtemp: 0700
        paths = write_pem_files(tls, Path(tmp))
        ctx.load_cert_chain(paths["cert"], paths["key"])


def server_context(tls: JobTLS, scratch: str) -> ssl.SSLContext:
    """A server-side context that requires a client certificate signed by the cluster's
    certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_key(ctx, tls, scratch)
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
    _load_key(ctx, tls, scratch)
    return ctx


def require_client_certificate(http_server: Any, tls: JobTLS, scratch: str) -> None:
    """Make ``http_server`` (tornado, listening, nothing accepted yet) wrap every new
    connection in TLS that requires the cluster's client certificate."""
    http_server.ssl_options = server_context(tls, scratch)
    logger.info("dashboard: TLS with the cluster's client certificate required")
