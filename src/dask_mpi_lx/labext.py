"""Jupyter server extension: a stable dashboard URL for this job's cluster, the Dask tab's
default dashboard URL set to it, and a busy cluster counted as activity (`keepalive`).

* ``<base_url>proxy/dask-mpi-lx/dashboard/...`` proxies (HTTP and websockets, behind the
  server's own authentication) to the job's dashboard. The URL is the same for every job,
  so a URL that JupyterLab saved in the user's workspace during an earlier job still works.
* dask-labextension 7.0.0 resets its URL box to its ``defaultURL`` setting ("") when its
  saved state loads after the cluster list; with the default set to the URL above, that
  reset lands on a working URL. Only the server's in-memory defaults change; no user file
  is written.

* ``<base_url>proxy/dask-mpi-lx/clusters/<id>/...``: the dashboard of each of the user's
  job clusters (`cluster.dashboard_route`), in every server, in a job or not.

Outside a job started by ``dask-mpi-lx launch`` only that last route is added.
"""

from __future__ import annotations

from typing import Any

from . import keepalive
from .cluster.dashboard_route import add_route as add_cluster_route
from .cluster.labcard import keep_job_card
from .config import JOB_DASHBOARD, JOB_DASHBOARD_SOCKET, job_setting, keepalive_interval, setting

PLUGIN = "dask-labextension:plugin"
ROUTE = "proxy/dask-mpi-lx/dashboard"


def job_dashboard() -> tuple[str, int] | str | None:
    """Where this job's dashboard listens, from the job config the launcher wrote: its
    owner-only Unix socket (behind a hub), else (host, port)."""
    socket_path = job_setting(JOB_DASHBOARD_SOCKET)
    if socket_path:
        return str(socket_path)
    dashboard = job_setting(JOB_DASHBOARD)
    return (str(dashboard[0]), int(dashboard[1])) if dashboard else None


def _settings_overrides(router: Any) -> list[dict]:
    """Every ``overrides`` dict handed to JupyterLab's settings handlers."""
    found = []
    for rule in getattr(router, "rules", []):
        kwargs = getattr(rule, "target_kwargs", None) or {}
        if isinstance(kwargs.get("overrides"), dict):
            found.append(kwargs["overrides"])
        found.extend(_settings_overrides(getattr(rule, "target", None)))
    return found


def set_default_dashboard_url(web_app: Any, url: str) -> int:
    """Make ``url`` the Dask tab's ``defaultURL`` unless the site set one; returns how many
    settings handlers now carry it."""
    found = {id(o): o for o in _settings_overrides(web_app.default_router)}.values()
    for overrides in found:
        overrides.setdefault(PLUGIN, {}).setdefault("defaultURL", url)
    return len(found)


def _handler_class() -> type:
    from jupyter_server_proxy.handlers import ProxyHandler

    class JobDashboardHandler(ProxyHandler):
        """Proxies ``proxy/dask-mpi-lx/dashboard/<path>`` to the job's dashboard."""

        def initialize(self, dashboard: tuple[str, int] | str) -> None:
            if isinstance(dashboard, str):  # a Unix socket: the proxy's resolver connects to it
                self.unix_socket = dashboard
                self.dashboard_host, self.dashboard_port = "localhost", 80
            else:
                self.dashboard_host, self.dashboard_port = dashboard

        def proxy(self, proxied_path: str) -> Any:
            return super().proxy(self.dashboard_host, self.dashboard_port, proxied_path)

        async def http_get(self, proxied_path: str) -> Any:
            return await self.proxy(proxied_path)

        async def open(self, proxied_path: str) -> Any:
            return await self.proxy_open(self.dashboard_host, self.dashboard_port, proxied_path)

        def post(self, proxied_path: str) -> Any:
            return self.proxy(proxied_path)

        def head(self, proxied_path: str) -> Any:
            return self.proxy(proxied_path)

    return JobDashboardHandler


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "dask_mpi_lx.labext"}]


def _relist_when_ready(serverapp: Any, tries: int = 100) -> None:
    """Once dask-labextension's manager has started, list the job clusters a Dask tab of
    this user made before this server started (`cluster.relist`)."""
    from .cluster.labcard import lab_manager

    manager = lab_manager()
    if manager is None:
        if tries:
            serverapp.io_loop.call_later(0.2, _relist_when_ready, serverapp, tries - 1)
        return

    async def relist_once() -> None:
        from .cluster.relist import relist

        await manager.initialized
        await relist(manager, serverapp.log)

    serverapp.io_loop.add_callback(relist_once)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    add_cluster_route(serverapp)  # job clusters' dashboards, in and outside a job
    if setting("jobs.enabled"):
        _relist_when_ready(serverapp)
    dashboard = job_dashboard()
    if not dashboard:
        return
    from jupyter_server.utils import url_path_join

    base = serverapp.base_url
    serverapp.web_app.add_handlers(".*$", [(
        url_path_join(base, ROUTE) + "(.*)", _handler_class(),
        {"dashboard": dashboard,
         "host_allowlist": ["localhost" if isinstance(dashboard, str) else dashboard[0]]},
    )])
    url = url_path_join(base, ROUTE, "status")
    attempts = {"left": 100}

    def apply() -> None:  # JupyterLab's settings handlers may register after this extension
        n = set_default_dashboard_url(serverapp.web_app, url)
        kept = keep_job_card()  # dask-labextension's manager may load after this extension
        attempts["left"] -= 1
        if (n and kept) or not attempts["left"]:
            serverapp.log.info("dask-mpi-lx: dashboard at %s (Dask tab default; %d handlers)",
                               url, n)
        else:
            serverapp.io_loop.call_later(0.2, apply)

    serverapp.io_loop.add_callback(apply)
    interval = keepalive_interval()
    if interval:
        keepalive.start(serverapp, dashboard, interval)
