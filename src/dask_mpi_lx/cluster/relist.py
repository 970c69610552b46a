"""After its Jupyter server restarts, the Dask tab lists again the job clusters it made.

A job cluster lives in the batch system, not in the server that made it: when that server
stops (a restart, a crash) its jobs run on until nothing has been attached for
``mpi-lx.jobs.lease`` (30 s). A server that starts within the lease finds each running
cluster a Dask tab made (a mark in the cluster's directory), attaches it again by id, and
its card is back, SHUTDOWN included. dask-labextension 7.0.0 has no public way to add a
card, so this uses its manager's dicts, as `labcard` does.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from ..config import setting
from ..exceptions import MPILXError
from ..runtime.cluster_dir import ClusterDir

logger = logging.getLogger(__name__)


async def relist(manager: Any, log: logging.Logger = logger) -> list[str]:
    """Attach and list this user's running Dask-tab job clusters that ``manager`` does not
    list yet; returns their ids. ``log``: the Jupyter server's, so its log says so."""
    from ..jobs.cluster import MPIJobCluster
    from ..jobs.listing import list_clusters

    clusters, names = getattr(manager, "_clusters", None), getattr(manager, "_cluster_names", None)
    if not isinstance(clusters, dict) or not isinstance(names, dict):
        return []
    parent = os.path.expanduser(str(setting("jobs.directory")))
    try:
        lines = await list_clusters(parent)
    except MPILXError as e:
        log.warning("Dask tab: could not look for running job clusters: %s", e)
        return []
    listed = {getattr(c, "cluster_id", None) for c in clusters.values()}
    back = []
    for line in lines:
        if not line.jobs or line.cluster_id in listed:
            continue
        if not ClusterDir(os.path.join(parent, line.cluster_id)).made_by_dask_tab():
            continue
        try:
            cluster = await MPIJobCluster.from_name(line.cluster_id, asynchronous=True,
                                                    shutdown_on_close=True)
        except MPILXError as e:
            log.warning("Dask tab: job cluster %s not listed again: %s", line.cluster_id, e)
            continue
        card = str(uuid.uuid4())
        clusters[card], names[card] = cluster, cluster.title
        back.append(line.cluster_id)
        log.info("Dask tab: job cluster %s listed again (%s)", line.cluster_id,
                    ", ".join(f"{j.job_id} {j.state}" for j in line.jobs))
    return back
