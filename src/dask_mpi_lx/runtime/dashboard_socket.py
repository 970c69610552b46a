"""Move the scheduler's HTTP server (dashboard, /info, /json) onto an owner-only Unix socket.

distributed always opens a TCP listener for it; every local user can reach 127.0.0.1 and the
dashboard has no login. Behind a hub the user's Jupyter server proxies the dashboard, so the
TCP listener is closed before the event loop ever accepts on it and the same server answers
on a socket file that only the job's user can connect to (mode 0600, created under umask 077).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def serve_on_unix_socket(http_server: Any, path: str) -> None:
    """Stop ``http_server`` listening on TCP and make it serve ``path`` instead."""
    from tornado.netutil import bind_unix_socket

    http_server.stop()  # closes the TCP sockets; nothing was accepted on them yet
    old_umask = os.umask(0o077)  # the socket exists as 0600 from its first moment
    try:
        sock = bind_unix_socket(path, mode=0o600)
    finally:
        os.umask(old_umask)
    http_server.add_socket(sock)
    logger.info("dashboard on the private socket %s (no TCP port)", path)


def remove_socket(path: str | None) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
