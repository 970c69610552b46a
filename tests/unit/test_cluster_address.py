"""``mpi-lx://<id>``: the address the Dask tab inserts for a job cluster connects with that
cluster's own keys, found by id in the user's jobs directory; an id of nobody's fails at
once, naming what it looked for."""

from __future__ import annotations

import asyncio

import dask
import pytest
from distributed import Client, Scheduler

from dask_mpi_lx.jobs.address import cluster_address
from dask_mpi_lx.runtime.cluster_dir import ClusterDir, Contact
from dask_mpi_lx.runtime.tls import new_job_tls, security_for


def test_a_bare_client_reaches_the_cluster_by_its_id(tmp_path):
    tls = new_job_tls()

    async def main() -> dict:
        async with Scheduler(host="127.0.0.1", port=0, protocol="tls", dashboard=False,
                             security=security_for(tls)) as scheduler:
            directory = ClusterDir.create(tmp_path, "1a2b3c4d", tls)
            directory.write_contact(Contact("7", scheduler.address, ("vm",)))
            # the caller's own config holds no key of this cluster (another cluster's, here)
            other = security_for(new_job_tls())
            with dask.config.set({"mpi-lx.jobs.directory": str(tmp_path)}):
                async with Client(cluster_address("1a2b3c4d"), asynchronous=True,
                                  security=other) as client:
                    info = await client.scheduler.identity()
                    plain = Client(scheduler.address, asynchronous=True, security=other,
                                   timeout="2s")
                    try:
                        await plain
                        refused = ""
                    except OSError as e:
                        refused = str(e)
            return {"id": info["id"], "refused": refused, "expected": scheduler.id}

    out = asyncio.run(main())
    assert out["id"] == out["expected"]
    assert out["refused"]  # the same scheduler by its tls:// address, without its keys


def test_an_unknown_id_fails_at_once_saying_where_it_looked(tmp_path):
    async def main() -> None:
        with dask.config.set({"mpi-lx.jobs.directory": str(tmp_path)}):
            await Client(cluster_address("0badc0de"), asynchronous=True, timeout="20s")

    # said at once, not "Timed out trying to connect" after retrying for 20 s
    with pytest.raises(OSError, match="no job cluster 0badc0de of yours"):
        asyncio.run(main())
