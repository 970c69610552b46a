"""WorkerPool on fakes: an in-memory channel, a scheduler that only tracks names, and ranks
that behave as dask_ranks.run_worker does (start, report, run until retired, park)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest

from dask_mpi_lx.exceptions import ScaleError
from dask_mpi_lx.runtime.pool import WorkerPool
from dask_mpi_lx.runtime.protocol import RankState, StateReport, Tag
from dask_mpi_lx.runtime.roles import plan_roles, worker_name

SCHED = 1
START = 0.05  # seconds a fake worker takes to start
RETIRE = 0.05  # seconds a fake retirement takes


class FakeChannel:
    """Messages to the scheduler rank queue up by tag; messages to worker ranks by rank."""

    def __init__(self) -> None:
        self.to_scheduler: dict[int, asyncio.Queue] = defaultdict(asyncio.Queue)
        self.to_rank: dict[int, asyncio.Queue] = defaultdict(asyncio.Queue)

    def send(self, dest: int, tag: int, payload: object) -> None:
        assert tag in (Tag.PARK, Tag.UNPARK) and dest != SCHED
        self.to_rank[dest].put_nowait(tag)

    async def next_for(self, rank: int, tag: int) -> None:
        """The rank's next message with ``tag``; others before it are stale (dropped)."""
        while await self.to_rank[rank].get() != tag:
            pass

    def report(self, rank: int, tag: int, payload: object) -> None:
        self.to_scheduler[tag].put_nowait((rank, payload))

    async def recv(self, tag: int, source: int | None = None) -> tuple[int, object]:
        return await self.to_scheduler[tag].get()


class FakeScheduler:
    def __init__(self) -> None:
        self.handlers: dict = {}
        self.workers: dict[str, SimpleNamespace] = {}
        self.keep: set[str] = set()  # workers whose data "cannot move"

    def workers_to_close(self, n: int, attribute: str) -> list[str]:
        return []

    async def retire_workers(self, names: list[str], close_workers: bool, remove: bool) -> dict:
        await asyncio.sleep(RETIRE)
        done = {}
        for name in names:
            if name in self.workers and name not in self.keep:  # data moved; stays until
                done[f"tls://x/{name}"] = {"name": name}               # its rank closes it
        return done


async def fake_rank(rank: int, channel: FakeChannel, scheduler: FakeScheduler) -> None:
    name = worker_name(rank)
    while True:
        await asyncio.sleep(START)
        scheduler.workers[name] = SimpleNamespace(name=name)
        channel.report(rank, Tag.STATE, StateReport(RankState.ACTIVE))
        await channel.next_for(rank, Tag.PARK)
        del scheduler.workers[name]  # closed through its Nanny
        channel.report(rank, Tag.STATE, StateReport(RankState.PARKED))
        await channel.next_for(rank, Tag.UNPARK)


class Job:
    def __init__(self) -> None:
        self.plan = plan_roles(["n1"] * 2 + ["n2"] * 3)  # ranks 2, 3, 4 are workers
        self.channel = FakeChannel()
        self.scheduler = FakeScheduler()
        self.pool = WorkerPool(self.scheduler, self.channel, self.plan, "42", None)
        self.ranks = [asyncio.ensure_future(fake_rank(r, self.channel, self.scheduler))
                      for r in self.plan.worker_ranks]
        self.pool.start()

    async def quiet(self, seconds: float = 0.6) -> None:
        """Long enough for every message in flight and every start and retirement."""
        await asyncio.sleep(seconds)

    def states(self) -> list[str]:
        return [v["state"] for v in self.pool.info()["ranks"].values()]

    async def close(self) -> None:
        await self.pool.stop()
        for t in self.ranks:
            t.cancel()


def run(coro_fn):
    async def main():
        job = Job()
        try:
            await job.quiet(0.2)
            return await coro_fn(job)
        finally:
            await job.close()

    return asyncio.run(main())


def test_review_race_two_clusters_scale_3_and_1_close_together():
    """scale(1); then scale(3) and scale(1) 30 ms apart, as from two attached clusters."""
    async def body(job: Job):
        await job.pool.scale(1)
        assert len(job.scheduler.workers) == 1

        async def later_one():
            await asyncio.sleep(0.03)
            return await job.pool.scale(1)

        first, second = await asyncio.gather(job.pool.scale(3), later_one())
        await job.quiet()
        assert len(job.scheduler.workers) == 1
        assert sorted(job.states()) == ["active", "parked", "parked"]
        assert (await job.pool.scale(1))["active"] == 1
        return first, second

    first, second = run(body)
    assert first["problem"] == "a later request (to 1 worker) replaced it"
    assert second["problem"] == "" and second["active"] == 1


def test_scale_waits_until_the_ranks_settled():
    async def body(job: Job):
        down = await job.pool.scale(1)
        assert len(job.scheduler.workers) == 1
        up = await job.pool.scale(3)
        assert len(job.scheduler.workers) == 3
        return down, up

    down, up = run(body)
    assert sorted(v["state"] for v in down["ranks"].values()) == ["active", "parked", "parked"]
    assert down["problem"] == "" and up["problem"] == "" and up["active"] == 3


def test_scale_timeout_says_how_far_it_got():
    async def body(job: Job):
        return await job.pool.scale(1, timeout=0.01)

    out = run(body)
    assert out["problem"].startswith("rank(s) 3, 4 still parking after 0.01s"), out


def test_refused_retirement_is_reported():
    async def body(job: Job):
        job.scheduler.keep = {worker_name(3), worker_name(4)}
        return await job.pool.scale(2)

    out = run(body)
    assert out["active"] == 3
    assert "rank 4 kept its worker" in out["problem"], out


def test_failed_worker_is_lost_not_parked():
    async def body(job: Job):
        job.channel.report(4, Tag.STATE, StateReport(RankState.LOST, "worker failed to start"))
        await job.quiet(0.1)
        return job.pool.info()

    out = run(body)
    assert out["limit"] == 2 and out["ranks"][4]["state"] == "lost"


@pytest.mark.parametrize("n", [4, -1, 1.5, True])
def test_out_of_range_requests_are_refused(n):
    async def body(job: Job):
        with pytest.raises(ScaleError) as e:
            await job.pool.scale(n)
        return str(e.value)

    message = run(body)
    assert ("this MPI job has 3 worker ranks" in message) or ("from 0 to 3" in message)
