"""A busy Dask cluster counts as activity of the user's Jupyter server.

jupyter_server records kernel activity only when a kernel sends output, so a notebook
waiting on a two-hour ``.compute()`` looks idle and an idle culler would stop the server
(and, with it, the job and the computation). Every `mpi-lx.keepalive.interval` this asks
the scheduler's HTTP server (``/json/counts.json``) how many tasks are processing; while
any are, it sets ``dask_mpi_lx_last_activity`` in the server's settings, which
jupyter_server folds into ``last_activity`` (every ``*_last_activity`` setting counts) and
jupyterhub-singleuser reports to the hub. An idle cluster adds nothing: idle servers are
still culled.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

SETTING = "dask_mpi_lx_last_activity"


def _client(dashboard: tuple[str, int] | str) -> tuple[Any, str]:
    from tornado.httpclient import AsyncHTTPClient
    from tornado.simple_httpclient import SimpleAsyncHTTPClient

    if isinstance(dashboard, str):  # the dashboard's Unix socket
        from jupyter_server_proxy.unixsock import UnixResolver

        client = SimpleAsyncHTTPClient(force_instance=True, resolver=UnixResolver(dashboard))
        return client, "http://localhost/json/counts.json"
    host, port = dashboard
    return AsyncHTTPClient(force_instance=True), f"http://{host}:{port}/json/counts.json"


async def tasks_processing(dashboard: tuple[str, int] | str) -> int | None:
    """Tasks running on the workers now; None when the scheduler does not answer."""
    client, url = _client(dashboard)
    try:
        response = await client.fetch(url, request_timeout=10, raise_error=False)
    finally:
        client.close()
    if response.code != 200:
        return None
    return int(json.loads(response.body).get("processing", 0))


def start(serverapp: Any, dashboard: tuple[str, int] | str, interval: float) -> Any:
    """Check every ``interval`` seconds; returns the running PeriodicCallback."""
    from tornado.ioloop import PeriodicCallback

    async def check() -> None:
        try:
            busy = await tasks_processing(dashboard)
        except Exception as e:  # the scheduler may be gone: that is no activity
            serverapp.log.debug("dask-mpi-lx keepalive: %s", e)
            return
        if busy:
            serverapp.web_app.settings[SETTING] = datetime.now(timezone.utc)
            serverapp.log.debug("dask-mpi-lx keepalive: %d tasks processing", busy)

    callback = PeriodicCallback(check, interval * 1000)
    callback.start()
    serverapp.log.info("dask-mpi-lx: a busy Dask cluster counts as activity (checked every %gs)",
                       interval)
    return callback
