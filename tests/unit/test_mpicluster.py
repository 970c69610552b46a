"""MPICluster against an in-process scheduler whose WorkerPool drives in-process workers
through a fake MPI channel (no mpirun): lifecycle, streams, scale, close, repr, links."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import dask.config
import pytest
from distributed import Scheduler, Worker
from distributed.core import Status

from dask_mpi_lx.cluster import labcard
from dask_mpi_lx.cluster.mpicluster import MPICluster, ScaleWarning
from dask_mpi_lx.config import JOB_DASHBOARD_LINK, JOB_ID, JOB_SCHEDULER_ADDRESS
from dask_mpi_lx.exceptions import MPILXError, ScaleError, SchedulerNotFoundError
from dask_mpi_lx.runtime.pool import WorkerPool
from dask_mpi_lx.runtime.protocol import RankState, StateReport, Tag
from dask_mpi_lx.runtime.roles import plan_roles, worker_name
from tests.unit.test_pool import FakeChannel

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def worker_rank(rank: int, channel: FakeChannel, address: str, live: dict,
                      unpark_delay: float) -> None:
    """What dask_ranks.run_worker does, with an in-process Worker."""
    while True:
        worker = live[rank] = await Worker(address, name=worker_name(rank), nthreads=1,
                                           dashboard=False)
        channel.report(rank, Tag.STATE, StateReport(RankState.ACTIVE))
        park = asyncio.ensure_future(channel.next_for(rank, Tag.PARK))
        await asyncio.wait([park, asyncio.ensure_future(worker.finished())],
                           return_when=asyncio.FIRST_COMPLETED)
        if park.done():
            await worker.close(reason="park")
        park.cancel()
        channel.report(rank, Tag.STATE, StateReport(RankState.PARKED))
        await channel.next_for(rank, Tag.UNPARK)
        await asyncio.sleep(unpark_delay)


def in_job(body: Callable[[str, WorkerPool], Awaitable[object]], unpark_delay: float = 0.0
           ) -> object:
    """Run ``body(address, pool)`` against a 3-worker "MPI job 42" on hosts n1, n2."""
    async def main():
        plan = plan_roles(["n1", "n1", "n2", "n2", "n2"])
        channel = FakeChannel()
        async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler:
            pool = WorkerPool(scheduler, channel, plan, "42", None)
            pool.start()
            live: dict[int, Worker] = {}
            ranks = [asyncio.ensure_future(worker_rank(r, channel, scheduler.address, live,
                                                             unpark_delay))
                     for r in plan.worker_ranks]
            while len(scheduler.workers) < 3:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # the ACTIVE reports
            try:
                with dask.config.set({JOB_ID: "42", JOB_SCHEDULER_ADDRESS: scheduler.address,
                                      "scheduler-address": scheduler.address}):
                    return await body(scheduler.address, pool)
            finally:
                await pool.stop()
                for t in ranks:
                    t.cancel()
                await asyncio.gather(*ranks, return_exceptions=True)
                await asyncio.gather(*(w.close() for w in live.values()), return_exceptions=True)

    return asyncio.run(main())


async def until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return check()


def test_name_repr_title_and_two_attachments_follow_scaling_by_stream():
    async def body(address, pool):
        a = await MPICluster(asynchronous=True)
        b = await MPICluster(asynchronous=True)
        try:
            before = repr(a)
            await a.scale(1)
            seen_by_b = await until(lambda: len(b.scheduler_info["workers"]) == 1)
            return before, repr(a), a.title, b.title, seen_by_b, a.worker_ranks
        finally:
            await a.close()
            await b.close()

    before, after, title_a, title_b, seen_by_b, ranks = in_job(body)
    assert before.startswith("MPICluster('MPI job 42: 3 workers on n1, n2', 'tcp://127.0.0.1:")
    assert before.endswith("mode=attach, threads=3, active_ranks=3, parked_ranks=0)")
    assert after.startswith("MPICluster('MPI job 42: 1 worker on n1, n2'")
    assert (title_a, title_b) == ("MPI job 42: 1 worker on n1, n2",) * 2
    assert seen_by_b  # b's own stream, though a subscribed after it
    assert sorted(v["state"] for v in ranks.values()) == ["active", "parked", "parked"]


def test_card_title_in_the_dask_tab_follows_the_worker_count(monkeypatch):
    manager = SimpleNamespace(_clusters={}, _cluster_names={})
    monkeypatch.setitem(__import__("sys").modules, "dask_labextension.manager",
                        SimpleNamespace(manager=manager))

    async def body(address, pool):
        cluster = await MPICluster(asynchronous=True, exclusive=True)
        manager._clusters["id"] = cluster
        manager._cluster_names["id"] = "MPICluster 2"  # what NEW names it
        try:
            await asyncio.sleep(0)
            first = manager._cluster_names["id"]
            await cluster.scale(2)
            return first, manager._cluster_names["id"]
        finally:
            await cluster.close()

    first, after = in_job(body)
    assert labcard.retitle(object(), "x") is False
    assert after == "MPI job 42: 2 workers on n1, n2"
    assert first in ("MPICluster 2", "MPI job 42: 3 workers on n1, n2")  # until the first event


def test_close_with_park_on_close_parks_every_worker_and_scale_brings_them_back():
    async def body(address, pool):
        tab = await MPICluster(asynchronous=True, exclusive=True, park_on_close=True)
        await tab.close()
        parked = [v["state"] for v in pool.info()["ranks"].values()]
        again = await MPICluster(asynchronous=True, exclusive=True, park_on_close=True)
        try:
            zero = len(again.scheduler_info["workers"])
            await again.scale(3)
            return parked, zero, again.title
        finally:
            again._park_on_close = False
            await again.close()

    parked, zero, title = in_job(body)
    assert parked == ["parked"] * 3
    assert zero == 0
    assert title == "MPI job 42: 3 workers on n1, n2"


def test_exclusive_second_attachment_is_refused_and_closed():
    async def body(address, pool):
        first = await MPICluster(asynchronous=True, exclusive=True)
        try:
            second = MPICluster(asynchronous=True, exclusive=True)
            with pytest.raises(MPILXError, match="already attached here"):
                await second
            return second.status
        finally:
            await first.close()

    assert in_job(body) == Status.closed


def test_scale_that_times_out_says_how_far_it_got():
    async def body(address, pool):
        cluster = await MPICluster(asynchronous=True)
        try:
            with dask.config.set({"mpi-lx.attach.scale-timeout": "1ms"}), \
                    pytest.raises(ScaleError) as e:
                await cluster.scale(1)
            return str(e.value)
        finally:
            await cluster.close()

    message = in_job(body)
    assert message.startswith("reached ") and " of 1 worker: rank(s) " in message, message
    assert "still parking after 0.001s" in message, message


def test_scale_replaced_by_a_later_one_warns_and_the_later_one_wins():
    async def body(address, pool):
        a = await MPICluster(asynchronous=True)
        b = await MPICluster(asynchronous=True)
        try:
            await a.scale(1)
            await until(lambda: pool.state.settled)

            async def later():
                await asyncio.sleep(0.05)
                await b.scale(1)

            with pytest.warns(ScaleWarning, match=r"scale\(3\) did not finish: a later"):
                await asyncio.gather(a.scale(3), later())
            await asyncio.sleep(0.5)
            return len(a.scheduler_info["workers"]), pool.state.settled
        finally:
            await a.close()
            await b.close()

    assert in_job(body, unpark_delay=0.3) == (1, True)


def test_adapt_keeps_the_users_interval():
    async def body(address, pool):
        cluster = await MPICluster(asynchronous=True)
        try:
            with dask.config.set({"distributed.adaptive.interval": "250ms"}):
                adaptive = cluster.adapt(minimum=1)
            interval = adaptive.interval
            adaptive.stop()
            return interval
        finally:
            await cluster.close()

    assert in_job(body) == 0.25


def test_dashboard_link_is_the_jobs_for_the_job_cluster_only():
    link = "/user/alice/proxy/dask-mpi-lx/dashboard/status"

    async def body(address, pool):
        with dask.config.set({JOB_DASHBOARD_LINK: link}):
            job = await MPICluster(asynchronous=True)
            try:
                job_link = job.dashboard_link
                with dask.config.set({JOB_SCHEDULER_ADDRESS: "tls://elsewhere:1"}):
                    return job_link, job.dashboard_link  # as if it were another cluster
            finally:
                await job.close()

    job_link, other_link = in_job(body)
    assert job_link == link
    assert other_link.startswith("http://127.0.0.1:")  # distributed's usual link, its own
    assert dask.config.get("distributed.dashboard.link") == "{scheme}://{host}:{port}/status"


def test_failed_start_closes_the_cluster_no_unclosed_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SchedulerNotFoundError, match="could not reach"):
            MPICluster("tcp://127.0.0.1:9", timeout=0.3, mode="attach")
        gc.collect()
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)
                and "unclosed cluster" in str(w.message)]
    assert not unclosed, unclosed


def test_attach_and_scale_after_the_global_config_was_reset(monkeypatch):
    """As after distributed's gen_test restores a snapshot taken before our import."""
    async def body(address, pool):
        monkeypatch.setattr(dask.config, "config", {
            k: v for k, v in dask.config.config.items() if k != "mpi-lx"})
        cluster = await MPICluster(asynchronous=True)  # was KeyError: 'mpi-lx.attach.timeout'
        try:
            await cluster.scale(2)
            return len(cluster.scheduler_info["workers"])
        finally:
            await cluster.close()

    assert in_job(body) == 2
