"""``<base_url>proxy/dask-mpi-lx/clusters/<id>/...``: a job cluster's dashboard through the
owner's Jupyter server, behind its authentication (a hub's, under JupyterHub).

The cluster is found by its id in the owner's jobs directory; its first job wrote where the
dashboard listens (mutual TLS on the compute node), and a `DashboardBridge` with the
cluster's key carries the proxy's HTTP and websockets there. A bridge lasts as long as its
cluster's dashboard does, and its socket goes with the server.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from typing import Any

from ..config import setting
from ..exceptions import MPILXError
from ..jobs.dashboard_bridge import DashboardBridge, parse_target

ROUTE = "proxy/dask-mpi-lx/clusters"
_bridges: dict[str, DashboardBridge] = {}


def cluster_dashboard_link(cluster_id: str, base_url: str | None = None) -> str:
    """The link to job cluster ``cluster_id``'s dashboard through the owner's Jupyter
    server: ``base_url`` (default: the hub's prefix for this server, else "/")."""
    base = base_url or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    return f"{base.rstrip('/')}/{ROUTE}/{cluster_id}/status"


async def bridge_for(cluster_id: str) -> DashboardBridge:
    """The running bridge to ``cluster_id``'s dashboard, made or remade as its contact says;
    `MPILXError` (no such cluster of the owner's, or no dashboard yet) otherwise."""
    from ..jobs.cluster import existing_directory

    directory = existing_directory(str(setting("jobs.directory")), cluster_id)
    contact = directory.read_contact()
    target = parse_target(contact.dashboard) if contact else None
    bridge = _bridges.get(cluster_id)
    if target is None:
        if bridge is not None:
            await _bridges.pop(cluster_id).close()
        raise MPILXError(f"job cluster {cluster_id} has no dashboard (yet): its first job "
                         "has not started, or it runs without TLS")
    if bridge is not None and bridge.target == target:
        return bridge
    if bridge is not None:
        await bridge.close()
    bridge = DashboardBridge(directory, target)
    await bridge.start()
    _bridges[cluster_id] = bridge
    return bridge


@atexit.register
def _remove_sockets() -> None:
    for bridge in _bridges.values():
        with contextlib.suppress(OSError):
            os.unlink(bridge.path)


def handler_class() -> type:
    from jupyter_server_proxy.handlers import ProxyHandler
    from tornado import web

    class ClusterDashboardHandler(ProxyHandler):
        """Proxies ``proxy/dask-mpi-lx/clusters/<id>/<path>`` to that job cluster's
        dashboard; 404 with the reason for a cluster the owner does not have."""

        async def _through_bridge(self, cluster_id: str) -> None:
            try:
                self.unix_socket = (await bridge_for(cluster_id)).path
            except MPILXError as e:
                raise web.HTTPError(404, str(e)) from e

        async def http_get(self, cluster_id: str, proxied_path: str) -> Any:
            await self._through_bridge(cluster_id)
            return await self.proxy("localhost", 80, proxied_path)

        async def open(self, cluster_id: str, proxied_path: str) -> Any:
            await self._through_bridge(cluster_id)
            return await self.proxy_open("localhost", 80, proxied_path)

        post = head = http_get  # the same proxying for every plain HTTP method

    return ClusterDashboardHandler


def add_route(serverapp: Any) -> None:
    """Register the route on ``serverapp`` (the extension does, in every server)."""
    from jupyter_server.utils import url_path_join

    pattern = url_path_join(serverapp.base_url, ROUTE) + r"/([0-9a-f]{8})(/.*|)"
    serverapp.web_app.add_handlers(".*$", [(pattern, handler_class(),
                                            {"host_allowlist": ["localhost"]})])
