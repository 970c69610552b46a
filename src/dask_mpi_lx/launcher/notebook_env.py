"""Pure: what rank 0's child (the Jupyter server, or any command) gets from the launcher."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import (
    JOB_DASHBOARD,
    JOB_DASHBOARD_LINK,
    JOB_DASHBOARD_SOCKET,
    JOB_ID,
    JOB_SCHEDULER_ADDRESS,
)
from ..mpi.environ import scrub_mpi
from ..runtime.roles import plural_workers
from ..runtime.tls import tls_config


@dataclass(frozen=True)
class JobCluster:
    """The running cluster, as the notebook must see it."""

    job_id: str
    address: str
    dashboard: tuple[str, int] | None   # where the dashboard listens (host, port)
    n_workers: int
    tls_paths: dict[str, str] | None    # {"cert": ..., "key": ...}, None with --no-tls
    dashboard_socket: str | None = None  # the dashboard's owner-only Unix socket, if private


def dashboard_link_template(
    dashboard: tuple[str, int] | None, service_prefix: str | None
) -> str | None:
    """A dashboard link template (``{port}``) for the job's cluster that works where the
    user is.

    Behind JupyterHub: ``<prefix>proxy/dask-mpi-lx/dashboard/status``, served by this
    package's Jupyter server extension (`dask_mpi_lx.labext`) through the user's server and
    its hub authentication; the same URL for every job. Without a hub: a plain http link to
    where the dashboard listens.
    """
    if dashboard is None:
        return None
    host, _port = dashboard
    if service_prefix:
        prefix = service_prefix if service_prefix.endswith("/") else service_prefix + "/"
        return prefix + "proxy/dask-mpi-lx/dashboard/status"
    local = host in ("127.0.0.1", "localhost", "::1")
    return "http://" + ("127.0.0.1" if local else host) + ":{port}/status"


def job_dashboard_link(dashboard: tuple[str, int] | None, service_prefix: str | None) -> str:
    """The job's dashboard link, port filled in; "" without a dashboard."""
    template = dashboard_link_template(dashboard, service_prefix)
    return template.format(port=dashboard[1]) if template and dashboard else ""


def _put(config: dict, key: str, value: Any) -> None:
    """Set a dotted ``key`` in a nested config dict."""
    *parents, last = key.split(".")
    for part in parents:
        config = config.setdefault(part, {})
    config[last] = value


def job_dask_config(cluster: JobCluster, service_prefix: str | None,
                    scratch: str | None = None) -> dict:
    """The job-scoped dask config: the scheduler address, TLS, the job's dashboard (its
    link is for the job's cluster only: ``distributed.dashboard.link`` stays as it is, so
    a LocalCluster started in a kernel links to its own dashboard) and the Dask tab's
    settings (attach to this job's cluster at start-up; no scaling on attach; SHUTDOWN
    parks the job's workers); ``scratch``: the kernels' Dask temporary directory."""
    config: dict = {
        "scheduler-address": cluster.address,
        "distributed": {},
        "labextension": {
            # the job's own cluster first; NEW launches a cluster of MPI batch jobs (or says
            # why the site turned that off)
            "factory": {"module": "dask_mpi_lx.cluster.lab_factory", "class": "lab_cluster",
                        "args": [], "kwargs": {}},
            "default": {"workers": None, "adapt": None},
            "initial": [{"name": f"MPI job {cluster.job_id}: {plural_workers(cluster.n_workers)}"}],
        },
    }
    if scratch:  # Dask in the kernels spills in the job's own directory
        config["temporary-directory"] = scratch
    _put(config, JOB_ID, cluster.job_id)
    _put(config, JOB_SCHEDULER_ADDRESS, cluster.address)
    if cluster.tls_paths:
        config["distributed"]["comm"] = tls_config(cluster.tls_paths)
    link = job_dashboard_link(cluster.dashboard, service_prefix)
    if link and cluster.dashboard:
        _put(config, JOB_DASHBOARD_LINK, link)
        _put(config, JOB_DASHBOARD, list(cluster.dashboard))
        if cluster.dashboard_socket:
            _put(config, JOB_DASHBOARD_SOCKET, cluster.dashboard_socket)
    return config


def child_environment(
    parent: Mapping[str, str], address: str | None, dask_config_dir: str | None
) -> dict[str, str]:
    """The child's environment: the parent's, minus every MPI variable, plus the cluster."""
    env = scrub_mpi(parent)
    if address:
        env["DASK_SCHEDULER_ADDRESS"] = address
    if dask_config_dir:
        env["DASK_CONFIG"] = dask_config_dir
    return env
