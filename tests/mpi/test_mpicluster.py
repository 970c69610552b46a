"""MPICluster against live MPI-launched clusters (Open MPI): attach, scale, adapt, batch."""

from __future__ import annotations

import json
import sys

import pytest

from tests import mpirun
from tests.conftest import ROOT

pytestmark = pytest.mark.mpi

SCENARIOS = str(ROOT / "tests" / "probes" / "cluster_scenarios.py")
BATCH = str(ROOT / "tests" / "probes" / "batch_script.py")


def scenario(name: str, dask_mpi_lx_cmd: list[str], tmp_path, np: int = 5,
             env: dict | None = None, logs: list[str] | None = None) -> dict:
    """Run the scenario as rank 0's command; its RESULT. ``logs`` gets the job's output."""
    marker = str(tmp_path)
    result = mpirun.run(
        [*dask_mpi_lx_cmd, "launch", "--job-directory", marker, "--", sys.executable,
         SCENARIOS, name], np=np, timeout=180,
        env={"SCENARIO_MARKER": marker, "PYTHONPATH": str(ROOT), **(env or {})})
    assert result.returncode == 0, result.describe()
    if logs is not None:
        logs.append(result.stdout + result.stderr)
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    pytest.fail("no RESULT line\n" + result.describe())


def test_attach_from_the_notebook(dask_mpi_lx_cmd, tmp_path):
    out = scenario("attach", dask_mpi_lx_cmd, tmp_path)
    assert out["mode"] == "attach"
    assert out["workers"] == ["rank-2", "rank-3", "rank-4"]
    assert out["sum"] == 3
    assert out["limit"] == 3
    assert out["name"].startswith("MPI job local-")
    assert "active_ranks=3, parked_ranks=0" in out["repr"]
    assert out["repr"].startswith(f"MPICluster('{out['name']}: 3 workers on ")
    assert "3 active, 0 parked (of 3)" in out["html"]
    assert out["dashboard_link"].startswith("http://127.0.0.1:")
    assert out["after_close_workers"] == 3  # close() detached; the job's cluster runs on


def test_worker_that_fails_to_start_is_lost_not_parked(dask_mpi_lx_cmd, tmp_path):
    cmd = [*dask_mpi_lx_cmd]
    marker = str(tmp_path)
    result = mpirun.run(
        [*cmd, "launch", "--job-directory", marker, "--no-wait-for-workers", "--worker-class",
         "tests.probes.cluster_scenarios.FailsToStart", "--", sys.executable, SCENARIOS,
         "failed_start"], np=5, timeout=180,
        env={"SCENARIO_MARKER": marker, "PYTHONPATH": str(ROOT), "SCENARIO_FAIL_RANK": "4"})
    assert result.returncode == 0, result.describe()
    out = json.loads(next(x for x in result.stdout.splitlines()
                          if x.startswith("RESULT "))[len("RESULT "):])
    assert out["states"]["4"] == "lost", out
    assert out["limit"] == 2 and out["workers"] == 2, out
    assert "rank 4 on " in result.stderr and "worker failed to start" in result.stderr


def test_review_race_scale_3_and_1_from_two_clusters_ends_at_1(dask_mpi_lx_cmd, tmp_path):
    out = scenario("race", dask_mpi_lx_cmd, tmp_path, np=6)
    assert out["after_race"] == 1, out
    assert out["after_again"] == 1, out
    assert out["states"] == ["active", "parked", "parked", "parked"], out
    assert all("did not finish: a later request" in w for w in out["warned"]), out


def test_dashboard_link_goes_through_the_hub_proxy(dask_mpi_lx_cmd, tmp_path):
    out = scenario("attach", dask_mpi_lx_cmd, tmp_path,
                   env={"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"})
    link = out["dashboard_link"]
    assert link == "/user/alice/proxy/dask-mpi-lx/dashboard/status", link


def test_scale_down_and_up_three_times(dask_mpi_lx_cmd, tmp_path):
    out = scenario("scale_cycles", dask_mpi_lx_cmd, tmp_path)
    parked = ["active", "parked", "parked"]
    assert out["counts"] == [1, parked, 3] * 3
    assert out["ranks"] == [5] * 6  # no rank ever exited
    assert out["sum"] == 9
    assert "this MPI job has 3 worker ranks" in out["too_many"]
    assert out["too_many"].startswith("ScaleError")
    assert "from 0 to 3" in out["negative"]


def test_adapt_parks_idle_workers_and_brings_them_back(dask_mpi_lx_cmd, tmp_path):
    out = scenario("adapt", dask_mpi_lx_cmd, tmp_path)
    assert out["min_max"] == [1, 3]  # maximum capped at the allocation
    assert out["idle_workers"] == 1
    assert out["idle_states"] == ["active", "parked", "parked"]
    assert out["busy_workers"] == 3
    assert out["result"] == sum(range(60))
    assert out["after_idle"] == 1
    assert out["adaptive_state"] == "stopped"
    assert out["manual"] == 2


def test_two_attached_clusters_both_see_every_change(dask_mpi_lx_cmd, tmp_path):
    out = scenario("two_attached", dask_mpi_lx_cmd, tmp_path)
    assert out == {"a": 2, "b": 2, "a_after": 3, "b_after": 3}


def test_labextension_manager_drives_the_job_cluster(dask_mpi_lx_cmd, tmp_path):
    out = scenario("labextension", dask_mpi_lx_cmd, tmp_path)
    name, workers, link = out["initial"][0]
    assert len(out["initial"]) == 1
    assert name.startswith("MPI job local-") and name.endswith(": 3 workers")
    assert workers == 3
    assert link.startswith("http://127.0.0.1:")
    assert out["scaled_down"] == 1
    assert out["scaled_up"] == 3
    assert out["adapt"] == {"minimum": 1, "maximum": 2}
    assert "turned off at this site" in out["new"] and "mpi-lx.jobs.enabled" in out["new"]
    assert out["listed_after_new"] == 1
    assert out["manual_after_adapt"] == 2
    assert out["title_after_scale"] == name.replace(": 3 workers", ": 2 workers")
    assert out["after_close"] == 0
    assert out["workers_after_shutdown"] == 0   # SHUTDOWN parked the job's workers
    job = name.split(":")[0]
    assert out["new_after_shutdown"] == [f"{job}: 0 workers", 0]   # NEW re-attaches under the job's name
    assert out["new_scaled"] == [f"{job}: 3 workers", 3]


def test_unreachable_scheduler_fails_with_what_it_looked_for(dask_mpi_lx_cmd, tmp_path):
    out = scenario("late_scheduler_timeout", dask_mpi_lx_cmd, tmp_path, np=3)
    assert out["error"].startswith("SchedulerNotFoundError")
    assert "tls://127.0.0.1:9" in out["error"] and "DASK_SCHEDULER_ADDRESS" in out["error"]
    assert out["seconds"] < 15


@pytest.mark.parametrize("np", [4, 8])
def test_batch_mode(np):
    result = mpirun.run([sys.executable, BATCH], np=np, timeout=180,
                        env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.describe()
    lines = [x for x in result.stdout.splitlines() if x.startswith("BATCH")]
    assert lines == [f"BATCH workers={np - 2} total=45 mode=batch",
                     "BATCH after-with on the client rank only"], result.describe()


def test_batch_mode_exit_false_lets_every_rank_go_on():
    result = mpirun.run([sys.executable, BATCH, "noexit"], np=4, timeout=180,
                        env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.describe()
    lines = sorted(x for x in result.stdout.splitlines() if x.startswith("BATCH rank"))
    assert lines == [f"BATCH rank {r} goes on" for r in range(4)], result.describe()


def test_batch_mode_body_exception_is_reported_and_every_rank_exits():
    result = mpirun.run([sys.executable, BATCH, "raise"], np=4, timeout=120,
                        env={"PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert "RuntimeError: body failed on purpose" in result.stderr
    assert "BATCH workers=2 total=45 mode=batch" in result.stdout
    assert "after-with" not in result.stdout
