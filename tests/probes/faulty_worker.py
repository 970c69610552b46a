"""A worker class for fault injection: `--worker-class tests.probes.faulty_worker.FaultyNanny`
makes the rank named in DASK_MPI_LX_FAULT_RANK raise while building its worker, an error that
no code of ours expects (the other ranks get a normal Nanny)."""

from __future__ import annotations

import os
from typing import Any

from distributed import Nanny


class FaultyNanny(Nanny):
    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any):
        if name == f"rank-{os.environ.get('DASK_MPI_LX_FAULT_RANK', '')}":
            raise RuntimeError(f"injected fault on {name}")
        super().__init__(*args, name=name, **kwargs)
