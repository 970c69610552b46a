"""The dashboard link MPICluster shows: through the user's Jupyter proxy behind a hub."""

from __future__ import annotations

import os

from ..launcher.notebook_env import dashboard_link_template


def dashboard_link(host: str | None, port: int | None) -> str:
    """A link that works where this process runs; "" when there is no dashboard. Never raises."""
    if not host or not port:
        return ""
    try:
        template = dashboard_link_template((host, int(port)),
                                           os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
        return template.format(host=host, port=port) if template else ""
    except Exception:
        return ""
