"""Faults under real MPI: a rank killed, the scheduler killed, an error on a Dask rank, rank 0
killed. The notebook is a Python child of rank 0 that reports what a user would see."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

import psutil
import pytest

from dask_mpi_lx.runtime.scratch import OWNED, owner_alive, sweep_leftovers
from tests import conftest, mpirun
from tests.conftest import ROOT

pytestmark = pytest.mark.mpi

RECOVERY = ("--enable-recovery",)  # what the spawner's mpirun launcher passes

# Lists the job's rank processes (the Nanny and the scheduler run in the rank process
# itself), then does what FAULT says, then reports.
NOTEBOOK = r'''
import json, os, signal, sys, time
from distributed import Client
from dask_mpi_lx import MPICluster

def say(tag, value):
    print(tag, json.dumps(value), flush=True)

with Client() as c:
    c.wait_for_workers(int(os.environ.get("EXPECT_WORKERS", "3")), timeout=60)
    workers = c.scheduler_info()["workers"]
    ranks = {w["name"]: c.run(os.getpid, workers=[a], nanny=True) for a, w in workers.items()}
    ranks = {n: next(iter(p.values())) for n, p in ranks.items()}
    ranks["scheduler"] = c.run_on_scheduler(os.getpid)
    ranks["rank-0"] = os.getppid()
    say("PIDS", ranks)
    fault = os.environ["FAULT"]
    if fault == "kill-worker-rank":
        os.kill(ranks["rank-3"], signal.SIGKILL)
        deadline = time.time() + 30
        while len(c.scheduler_info()["workers"]) > 2 and time.time() < deadline:
            time.sleep(0.2)
        cluster = MPICluster()
        deadline = time.time() + 15
        while cluster.worker_ranks.get(3, {}).get("state") != "lost" and time.time() < deadline:
            time.sleep(0.2)
        say("AFTER", {"workers": sorted(w["name"] for w in c.scheduler_info()["workers"].values()),
                      "sum": c.submit(sum, [1, 2]).result(), "limit": cluster.limit,
                      "rank3": cluster.worker_ranks[3]["state"]})
        cluster.close()
    elif fault == "kill-scheduler":
        os.kill(ranks["scheduler"], signal.SIGKILL)
        t0 = time.time()
        try:
            c.submit(sum, [1, 2]).result(timeout=90)
            outcome = "computed"
        except Exception as e:
            outcome = type(e).__name__
        failed_after = time.time() - t0
        deadline = time.time() + 30
        workers_gone = False
        while time.time() < deadline and not workers_gone:
            workers_gone = not any(os.path.exists(f"/proc/{ranks[n]}") for n in ("rank-2", "rank-3"))
            time.sleep(0.2)
        say("AFTER", {"outcome": outcome, "seconds": failed_after, "workers_gone": workers_gone})
print("NOTEBOOK-ALIVE-AT-END", flush=True)
'''


def _facts(result: mpirun.Run, tag: str) -> dict:
    for line in result.stdout.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    pytest.fail(f"the notebook printed no {tag} line\n" + result.describe())


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_all_gone(pids: dict, grace: float = 10.0) -> None:
    """Every listed process ends within ``grace`` seconds of the launcher's exit (mpirun
    may exit while its last SIGKILLs are still being delivered)."""
    deadline = time.monotonic() + grace
    while True:
        left = {n: p for n, p in pids.items() if is_running(p)}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"processes left {grace:g}s after the job: {left}"


def test_killed_worker_rank_notebook_lives_under_open_mpi_recovery(dask_mpi_lx_cmd):
    """SIGKILL of a whole worker rank (the OOM killer's worst pick): under
    `mpirun --enable-recovery` the notebook goes on with one worker fewer, the Dask tab's
    limit drops, and the job still ends cleanly."""
    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, NOTEBOOK), np=5, timeout=150,
                        env={"FAULT": "kill-worker-rank"}, mpi_args=RECOVERY)
    assert result.returncode == 0, result.describe()
    after = _facts(result, "AFTER")
    assert after == {"workers": ["rank-2", "rank-4"], "sum": 3, "limit": 2, "rank3": "lost"}, \
        result.describe()
    assert "NOTEBOOK-ALIVE-AT-END" in result.stdout
    assert "a Dask worker, died" in result.stderr
    assert re.search(r"worker rank 3 \(\S+\) is lost", result.stderr), result.describe()
    assert_all_gone(_facts(result, "PIDS"))


@pytest.mark.parametrize("launcher,mpi_args", [("openmpi", ()),
                                               ("mpich", ()), ("mpich", ("-disable-auto-cleanup",))])
def test_killed_worker_rank_without_recovery_ends_the_job_cleanly(dask_mpi_lx_cmd, launcher,
                                                                    mpi_args, tmp_path):
    """Default Open MPI and MPICH's Hydra (even with -disable-auto-cleanup) end the whole
    job when a rank is killed: documented; the job must end at once, no process left, and
    the files its SIGKILLed ranks could not remove go with the next job here."""
    env = {"FAULT": "kill-worker-rank"}
    argv = mpirun.notebook(dask_mpi_lx_cmd, NOTEBOOK, "--job-directory", str(tmp_path))
    if launcher == "mpich":
        bin_dir = conftest.mpich_bin()
        env["MPICH_MPIEXEC"] = str(bin_dir / "mpiexec")
        argv = [str(bin_dir / "dask-mpi-lx"), "launch", "--job-directory", str(tmp_path), "--",
                str(bin_dir / "python"), "-c", NOTEBOOK]
    t0 = time.monotonic()
    result = mpirun.run(argv, np=5, timeout=120, env=env, launcher=launcher, mpi_args=mpi_args)
    pids = _facts(result, "PIDS")
    assert result.returncode != 0, result.describe()
    assert "NOTEBOOK-ALIVE-AT-END" not in result.stdout
    assert time.monotonic() - t0 < 60, result.describe()
    assert_all_gone(pids)
    sweep_leftovers(str(tmp_path))  # what the next job on this host does first
    assert list(tmp_path.glob("dask-mpi-lx-*")) == []


def test_killed_scheduler_client_fails_fast_and_no_rank_hangs(dask_mpi_lx_cmd):
    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, NOTEBOOK), np=5, timeout=180,
                        env={"FAULT": "kill-scheduler"}, mpi_args=RECOVERY)
    assert result.returncode == 0, result.describe()
    after = _facts(result, "AFTER")
    # the Client lost its scheduler (not some unrelated error): its futures are cancelled
    assert after["outcome"] in ("FutureCancelledError", "CommClosedError"), result.describe()
    assert after["seconds"] < 40, result.describe()
    assert after["workers_gone"], result.describe()  # the worker ranks did not wait for walltime
    assert "NOTEBOOK-ALIVE-AT-END" in result.stdout
    assert "the Dask scheduler is gone" in result.stderr
    assert_all_gone(_facts(result, "PIDS"))


@pytest.mark.parametrize("mpi_args", [(), RECOVERY], ids=["default", "recovery"])
def test_unhandled_error_on_a_dask_rank_is_logged_and_nothing_deadlocks(dask_mpi_lx_cmd,
                                                                         mpi_args):
    result = mpirun.run(
        mpirun.notebook(dask_mpi_lx_cmd, NOTEBOOK, "--worker-class",
                  "tests.probes.faulty_worker.FaultyNanny"),
        np=5, timeout=120, mpi_args=mpi_args,
        env={"FAULT": "none", "EXPECT_WORKERS": "2", "DASK_MPI_LX_FAULT_RANK": "3",
             "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.describe()
    assert sorted(_facts(result, "PIDS")) == ["rank-0", "rank-2", "rank-4", "scheduler"]
    assert "NOTEBOOK-ALIVE-AT-END" in result.stdout
    assert "unhandled error in this rank's worker" in result.stderr, result.describe()
    assert "RuntimeError: injected fault on rank-3" in result.stderr
    assert re.search(r"worker rank 3 \(\S+\) is lost", result.stderr), result.describe()
    assert "cluster stopped" in result.stderr


@pytest.mark.parametrize("mpi_args", [(), RECOVERY], ids=["default", "recovery"])
def test_killed_rank0_takes_the_notebook_and_every_rank_down(dask_mpi_lx_cmd, tmp_path,
                                                            mpi_args):
    """Rank 0 dead (before or after the hub got its port): the Jupyter server must not live
    on without it, and no Dask rank may wait for a stop that never comes."""
    marker = tmp_path / "notebook.pid"
    # the notebook says who it is once the cluster is up (its workers joined)
    code = ("import os, time\nfrom distributed import Client\n"
            "Client().wait_for_workers(2, timeout=60)\n"
            f"open({str(marker)!r} + '.tmp', 'w').write(f'{{os.getpid()}} {{os.getppid()}}')\n"
            f"os.rename({str(marker)!r} + '.tmp', {str(marker)!r})\n"
            "time.sleep(120)\n")
    proc = mpirun.start(mpirun.notebook(dask_mpi_lx_cmd, code, "--job-directory",
                                        str(tmp_path)), np=4, mpi_args=mpi_args)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), "the notebook never saw its cluster"
        notebook, rank0 = (int(x) for x in marker.read_text().split())
        os.kill(rank0, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    except BaseException:
        mpirun.stop_group(proc)
        raise
    assert_all_gone({"notebook": notebook})  # its parent-death signal is asynchronous
    if mpi_args:
        assert "rank 0 (pid" in err and "is gone" in err, err
    # rank 0 could not remove its job directory (keys inside), nor could a worker rank that
    # mpirun killed remove its spill directory; the next job here removes them all
    left = sorted(tmp_path.glob("dask-mpi-lx-*"))
    assert len([p for p in left if "-job-" in p.name]) == 1, left
    # a rank mpirun killed may still be exiting: the sweep spares a live owner's entries
    owners = [OWNED.match(p.name) for p in left]
    deadline = time.monotonic() + 30
    while any(m and owner_alive(int(m["pid"]), int(m["start"])) for m in owners) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(sweep_leftovers(str(tmp_path))) == left
    assert not any(p.exists() for p in left)


def test_rank0_killed_before_the_plan_no_rank_waits_forever(dask_mpi_lx_cmd):
    """Rank 0 killed right after it started, before it sent the ranks their plan (under
    --enable-recovery nothing else ends them): the ranks see it gone and leave."""
    proc = mpirun.start(mpirun.notebook(dask_mpi_lx_cmd, "pass"), np=4,
                        mpi_args=RECOVERY)
    try:
        deadline = time.monotonic() + 30
        rank0 = None
        while rank0 is None and time.monotonic() < deadline:
            rank0 = mpirun.rank_process(0, [c.pid for c in psutil.Process(proc.pid).children()])
        assert rank0, "rank 0 never appeared"
        os.kill(rank0, signal.SIGKILL)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
    except BaseException:
        mpirun.stop_group(proc)
        raise
    assert time.monotonic() - t0 < 20, err
    # killed inside MPI_Init: the watchdogs of the others see it; killed later: their StopWatch
    assert "ended while MPI was starting" in err or ("rank 0 (pid" in err and "is gone" in err), err


@pytest.mark.parametrize("wait", ["--wait-for-workers", "--no-wait-for-workers"])
def test_scheduler_port_taken_by_someone_else_is_a_clear_failure(dask_mpi_lx_cmd, wait):
    """Another process holds the configured scheduler port: the log names the port, the
    notebook starts anyway, and a Client never trusts the other process (TLS)."""
    import socket

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    code = ("import os\nfrom distributed import Client\n"
            "addr = os.environ.get('DASK_SCHEDULER_ADDRESS')\nprint('ADDRESS', addr, flush=True)\n"
            "try:\n    if addr:\n        Client(addr, timeout='3s')\n        print('CONNECTED')\n"
            "except Exception as e:\n    print('REFUSED', type(e).__name__, repr(e.__cause__))\n")
    try:
        result = mpirun.run([*dask_mpi_lx_cmd, "launch", "--scheduler-port", str(port), wait,
                             "--", sys.executable, "-c", code], np=4, timeout=120)
    finally:
        squatter.close()
    assert result.returncode == 0, result.describe()
    assert f"port {port} is already in use by another process" in result.stderr, result.describe()
    assert "CONNECTED" not in result.stdout, result.describe()
    if wait == "--no-wait-for-workers":  # the address was handed out before the failure
        assert f"ADDRESS tls://127.0.0.1:{port}" in result.stdout
        # the squatter accepts and never speaks TLS: the client gives up, it never trusts it
        assert "REFUSED OSError" in result.stdout or "REFUSED TimeoutError" in result.stdout, \
            result.describe()
    else:
        assert "ADDRESS None" in result.stdout  # no cluster: said, and nothing to connect to


@pytest.mark.parametrize("wait", ["--no-wait-for-workers", "--wait-for-workers"])
def test_slow_scheduler_start_does_not_delay_the_notebook(dask_mpi_lx_cmd, wait):
    """The scheduler takes 8 s to start. The hub's mode (no wait) starts Jupyter at once and
    a Client connects once the scheduler is up; waiting for the cluster is bounded by the
    scheduler timeout, after which the command starts without a cluster and the log says so."""
    code = ("import os, time\nprint('CHILD', time.time(), flush=True)\n"
            "addr = os.environ.get('DASK_SCHEDULER_ADDRESS')\n"
            "if addr:\n    from distributed import Client\n"
            "    c = Client(timeout='60s')\n"
            "    print('CONNECTED', time.time(), c.submit(sum, [1, 2]).result(), flush=True)\n"
            "else:\n    time.sleep(8)  # the user works on without a cluster for a while\n")
    t0 = time.time()
    result = mpirun.run([*dask_mpi_lx_cmd, "launch", wait, "--scheduler-timeout", "2s", "--",
                         sys.executable, "-c", code], np=4, timeout=120,
                        env={"DASK_DISTRIBUTED__SCHEDULER__PRELOAD": str(ROOT / "tests" / "probes"
                                                                          / "slow_preload.py"),
                             "SLOW_START_SECONDS": "8"})
    assert result.returncode == 0, result.describe()
    child = float(next(x for x in result.stdout.splitlines() if x.startswith("CHILD")).split()[1])
    if wait == "--no-wait-for-workers":
        assert child - t0 < 8, result.describe()  # before the scheduler could be up
        connected = next(x for x in result.stdout.splitlines() if x.startswith("CONNECTED"))
        assert connected.split()[2] == "3" and float(connected.split()[1]) - t0 >= 8
    else:
        assert "the scheduler did not start within 4s" in result.stderr, result.describe()
        assert "CONNECTED" not in result.stdout
    assert "cluster stopped" in result.stderr


def test_oom_killer_prefers_workers_to_the_notebook_and_scheduler(dask_mpi_lx_cmd):
    code = ("import json\nfrom distributed import Client\n"
            "adj = lambda: open('/proc/self/oom_score_adj').read().strip()\n"
            "c = Client(); c.wait_for_workers(2)\n"
            "print('ADJ', json.dumps({'notebook': adj(), 'scheduler': c.run_on_scheduler(adj),\n"
            "  'workers': sorted(set(c.run(adj).values())),\n"
            "  'worker_ranks': sorted(set(c.run(adj, nanny=True).values()))}))\n")
    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, code), np=4)
    assert result.returncode == 0, result.describe()
    assert _facts(result, "ADJ") == {"notebook": "0", "scheduler": "0", "workers": ["500"],
                                     "worker_ranks": ["500"]}


def test_behind_a_hub_dask_binds_no_port_before_jupyter_has_its_own(dask_mpi_lx_cmd):
    """batchspawner-singleuser picks a free port and tells the hub before Jupyter binds it;
    Linux gives a just-released port to the next bind(0), so a Dask listener opened in
    between could take it (seen in CI). Behind a hub the Dask ranks wait until the command
    listens."""
    code = """
import socket, time
from distributed import Client
time.sleep(2)
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("BOUND", time.time(), flush=True)
with Client(timeout="60s") as c:
    c.wait_for_workers(2, timeout=60)
    print("RESULT", c.submit(sum, [1, 2]).result(), flush=True)
"""
    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, code, "--no-wait-for-workers"), np=4,
                        env={"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"})
    assert result.returncode == 0, result.describe()
    assert "RESULT 3" in result.stdout, result.describe()
    assert "the command listens on its port after" in result.stderr, result.describe()
    bound = float(next(x for x in result.stdout.splitlines() if x.startswith("BOUND")).split()[1])
    scheduler_line = next(x for x in result.stderr.splitlines() if "Scheduler at:" in x)
    started = time.mktime(time.strptime(scheduler_line[:19], "%Y-%m-%d %H:%M:%S")) \
        + int(scheduler_line[20:23]) / 1000
    assert started >= bound - 0.01, (scheduler_line, bound)
