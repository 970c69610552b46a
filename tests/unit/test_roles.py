import pytest

from dask_mpi_lx.exceptions import WorldTooSmallError
from dask_mpi_lx.runtime.roles import Role, plan_roles, rank_of_worker, worker_name


def test_single_host_scheduler_on_rank1():
    plan = plan_roles(["a"] * 5)
    assert plan.scheduler_rank == 1
    assert plan.worker_ranks == (2, 3, 4)
    assert [plan.role(r) for r in range(5)] == [Role.IDLE, Role.SCHEDULER] + [Role.WORKER] * 3
    assert plan.scheduler_shares_rank0_host


def test_scheduler_follows_rank0_host_when_ranks_are_spread():
    plan = plan_roles(["a", "b", "b", "a", "b"])
    assert plan.scheduler_rank == 3
    assert plan.worker_ranks == (1, 2, 4)


def test_rank0_alone_on_its_host_uses_rank1():
    plan = plan_roles(["a", "b", "b", "c"])
    assert plan.scheduler_rank == 1
    assert not plan.scheduler_shares_rank0_host


def test_slurm_block_layout_keeps_scheduler_on_notebook_node():
    """--nodes=2 --ntasks-per-node=3 under mpirun: ranks 0-2 on n1, 3-5 on n2."""
    plan = plan_roles(["n1"] * 3 + ["n2"] * 3)
    assert plan.scheduler_rank == 1 and plan.scheduler_shares_rank0_host
    assert not plan.single_host
    assert plan.worker_ranks == (2, 3, 4, 5)


@pytest.mark.parametrize("size", [1, 2])
def test_world_too_small_says_found_and_needed(size):
    with pytest.raises(WorldTooSmallError, match=f"found {size} MPI rank.*need at least 3"):
        plan_roles(["a"] * size)


def test_worker_names_roundtrip():
    assert worker_name(7) == "rank-7"
    assert rank_of_worker("rank-7") == 7
    assert rank_of_worker("tls://x:1") is None
