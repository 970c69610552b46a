"""The dashboard's HTTP server moved from TCP onto an owner-only Unix socket, and the
keep-alive's question to it (tasks processing)."""

from __future__ import annotations

import asyncio
import socket
import stat

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from dask_mpi_lx.keepalive import tasks_processing
from dask_mpi_lx.runtime.dashboard_socket import remove_socket, serve_on_unix_socket


class Counts(RequestHandler):
    def get(self) -> None:
        self.write({"processing": 2, "workers": 3})


def test_tcp_listener_closed_and_socket_private(tmp_path):
    async def main() -> None:
        server = HTTPServer(Application([(r"/json/counts.json", Counts)]))
        server.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]
        path = str(tmp_path / "dash.sock")
        serve_on_unix_socket(server, path)
        assert stat.S_IMODE((tmp_path / "dash.sock").stat().st_mode) == 0o600
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens on TCP any more
        assert await tasks_processing(path) == 2  # what the keep-alive asks, over the socket
        server.stop()
        remove_socket(path)
        assert not (tmp_path / "dash.sock").exists()
        remove_socket(path)  # twice is fine

    asyncio.run(main())
