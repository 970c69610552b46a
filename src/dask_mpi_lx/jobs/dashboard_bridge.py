"""The owner's way to a job cluster's dashboard: an owner-only Unix socket in the cluster's
directory whose connections go on over mutual TLS, with the cluster's key, to the dashboard
beside the scheduler on the compute node (`runtime.dashboard_mtls`).

The Jupyter server's proxy (jupyter-server-proxy, as for the job's own dashboard) speaks
HTTP and websockets to the socket. This module only moves bytes: that proxy cannot present
a client certificate on its websocket path, and no library here forwards a stream into TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl

from ..exceptions import MPILXError
from ..runtime.cluster_dir import ClusterDir
from ..runtime.dashboard_mtls import client_context

logger = logging.getLogger(__name__)

CHUNK = 1 << 16
SUN_PATH_MAX = 107  # bytes of a Unix socket's path, with its terminating NUL in 108


def socket_path(directory: ClusterDir) -> str:
    """This process's socket in the cluster's directory (0700): the owner alone connects."""
    path = str(directory.path / f"dashboard-{socket.gethostname()}-{os.getpid()}.sock")
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise MPILXError(f"{path} is too long for a Unix socket; set mpi-lx.jobs.directory "
                         "to a shorter private path")
    return path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
            writer.close()


class DashboardBridge:
    """One job cluster's dashboard, reached from a Unix socket, for as long as it runs."""

    def __init__(self, directory: ClusterDir, target: tuple[str, int]):
        self.directory = directory
        self.target = target
        self.path = socket_path(directory)
        tls = directory.load_tls()
        if tls is None:
            raise MPILXError(f"{directory.path} holds no TLS keys: its dashboard (mutual TLS) "
                             "cannot be reached")
        self._context = client_context(tls, str(directory.path))
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        """Listen on the socket (0600 from its first moment); returns its path."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._forward, self.path)
        finally:
            os.umask(old_umask)
        logger.info("dashboard of %s (%s:%d) through %s", self.directory.path.name,
                    *self.target, self.path)
        return self.path

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=self._context, server_hostname="dask-internal"), 20)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as e:
            logger.warning("dashboard of %s at %s:%d: %s", self.directory.path.name, host,
                           port, e or type(e).__name__)
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def parse_target(dashboard: str) -> tuple[str, int] | None:
    """"host:port" (a contact's dashboard) as a pair; None for "" or anything else."""
    host, _, port = dashboard.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None
