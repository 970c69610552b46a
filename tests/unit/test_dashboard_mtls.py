"""A job cluster's dashboard: mutual TLS on the node (no client certificate, no page), and
the owner's bridge from a private Unix socket to it."""

from __future__ import annotations

import asyncio
import ssl
import stat

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from dask_mpi_lx.jobs.dashboard_bridge import DashboardBridge, parse_target
from dask_mpi_lx.runtime.cluster_dir import ClusterDir
from dask_mpi_lx.runtime.dashboard_mtls import client_context, require_client_certificate
from dask_mpi_lx.runtime.tls import new_job_tls


class Status(RequestHandler):
    def get(self) -> None:
        self.write("dashboard of this cluster")


def _server(tls, scratch) -> tuple[HTTPServer, int]:
    server = HTTPServer(Application([(r"/status", Status)]))
    server.listen(0, "127.0.0.1")
    require_client_certificate(server, tls, str(scratch))
    return server, next(iter(server._sockets.values())).getsockname()[1]


async def _get(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname="dask-internal")
    writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    return data


def _no_certificate() -> ssl.SSLContext:
    """What another user has: TLS, willing to accept any server, but no key of the cluster."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_only_the_clusters_certificate_opens_the_dashboard(tmp_path):
    tls, other = new_job_tls(), new_job_tls()

    async def main() -> None:
        server, port = _server(tls, tmp_path)
        try:
            assert b"200 OK" in await _get(port, client_context(tls, str(tmp_path)))
            for refused in (_no_certificate(), client_context(other, str(tmp_path))):
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    answer = await _get(port, refused)
                    assert not answer, answer  # TLS 1.3: the refusal may come after the reply
        finally:
            server.stop()

    asyncio.run(main())
    assert list(tmp_path.iterdir()) == []  # the key passed through files only for a moment


def test_bridge_carries_the_owners_requests_from_a_private_socket(tmp_path):
    tls = new_job_tls()
    directory = ClusterDir.create(tmp_path / "clusters", "1a2b3c4d", tls)

    async def main() -> None:
        server, port = _server(tls, tmp_path)
        bridge = DashboardBridge(directory, ("127.0.0.1", port))
        path = await bridge.start()
        try:
            assert stat.S_IMODE((directory.path / path.rsplit("/", 1)[1]).stat().st_mode) == 0o600
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert b"200 OK" in answer and b"dashboard of this cluster" in answer
        finally:
            await bridge.close()
            server.stop()
        assert not any(p.suffix == ".sock" for p in directory.path.iterdir())

    asyncio.run(main())


def test_contact_dashboard_parsed():
    assert parse_target("10.77.0.2:40123") == ("10.77.0.2", 40123)
    assert parse_target("[::1]:8787") == ("::1", 8787)
    assert parse_target("") is None
    assert parse_target("no-port") is None
