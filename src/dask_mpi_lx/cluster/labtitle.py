"""The title of a cluster's card in the Dask tab, kept up to date.

dask-labextension's manager fixes a card's title when the cluster starts (from
``labextension.initial``'s name, or "<class> <n>" for NEW) and never asks the cluster
again; this sets it in the Jupyter server's manager, so the job's card always reads
"MPI job <id>: <n> workers".
"""

from __future__ import annotations

import sys
from typing import Any


def retitle(cluster: Any, title: str) -> bool:
    """Set ``cluster``'s card title in the running server's manager; False when this process
    has no Dask tab manager or the manager does not list ``cluster``."""
    module = sys.modules.get("dask_labextension.manager")
    manager = getattr(module, "manager", None)
    clusters = getattr(manager, "_clusters", None)
    names = getattr(manager, "_cluster_names", None)
    if not isinstance(clusters, dict) or not isinstance(names, dict):
        return False
    found = False
    for cluster_id, listed in clusters.items():
        if listed is cluster:
            names[cluster_id] = title
            found = True
    return found
