"""The job's card in the Dask tab: its title follows the workers, and it stays listed.

dask-labextension 7's manager fixes a card's title when the cluster starts (from
``labextension.initial``'s name, or "<class> <n>" for NEW) and never asks the cluster
again; `retitle` sets it in the Jupyter server's manager, so the job's card always reads
"MPI job <id>: <n> workers". SHUTDOWN on the job's card parks every worker (the cluster's
``park_on_close``) and the manager forgets the card; `keep_job_card` attaches it again at
once under the same id and name, so the card shows the parked cluster (0 workers) and comes
back on a Lab reload, instead of vanishing while the job's cluster runs on. Both work on the
manager's private dicts (checked for 7.0.0) and do nothing where those are missing.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)


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


def lab_manager() -> Any:
    module = sys.modules.get("dask_labextension.manager")
    return getattr(module, "manager", None)


def keep_job_card(manager: Any = None) -> bool:
    """Make SHUTDOWN on the job's card re-list the (parked) job cluster; True once installed."""
    manager = manager or lab_manager()
    close = getattr(manager, "close_cluster", None)
    if close is None or getattr(close, "_mpi_lx_keeps_job_card", False):
        return close is not None

    async def close_cluster(cluster_id: str) -> Any:
        cluster = getattr(manager, "_clusters", {}).get(cluster_id)
        model = await close(cluster_id)
        if getattr(cluster, "parks_on_close", False):
            import dask.config

            initial = (dask.config.get("labextension.initial", default=None) or [{}])[0]
            try:
                await manager.start_cluster(cluster_id=cluster_id, configuration=initial)
            except Exception as e:  # the job's scheduler is gone: the card stays closed
                logger.warning("the job's cluster could not be listed again: %s", e)
            else:  # the manager named it from the job config: say how many workers it has now
                listed = getattr(manager, "_clusters", {}).get(cluster_id)
                if listed is not None and hasattr(listed, "title"):
                    retitle(listed, listed.title)
        return model

    close_cluster._mpi_lx_keeps_job_card = True  # type: ignore[attr-defined]
    manager.close_cluster = close_cluster
    return True
