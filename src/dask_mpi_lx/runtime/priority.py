"""Dask ranks on the notebook's host run at a lower CPU priority than the notebook.

When the job starts, every Dask rank imports Dask and starts a scheduler or a worker at
the same moment as Jupyter starts on rank 0: on the notebook's host they compete for the
same cores, and the user waits for the Lab. A higher niceness (``mpi-lx.notebook-host-nice``)
lets Jupyter, and later the kernels, go first; Dask uses every cycle they leave. Ranks on
other hosts keep their priority: nothing of the notebook runs there. An unprivileged
process cannot lower its niceness again, so it stays for the job's life.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def yield_to_notebook(notebook_host: str | None, niceness: int) -> int:
    """Raise this process's niceness by ``niceness`` if it shares the notebook's host;
    return the niceness it runs at (its Nanny's worker processes inherit it)."""
    if niceness <= 0 or notebook_host is None or notebook_host != socket.gethostname():
        return os.getpriority(os.PRIO_PROCESS, 0)
    try:
        return os.nice(niceness)
    except OSError as e:  # a site's limits can refuse it: run at the priority we have
        logger.warning("could not lower this rank's CPU priority below the notebook's: %s", e)
        return os.getpriority(os.PRIO_PROCESS, 0)
