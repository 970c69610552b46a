"""Rank liveness from pids (what rank 0 and the ranks use to see a dead peer on their host),
and the watchdog that ends a process stuck while MPI starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil

from dask_mpi_lx.runtime.liveness import RankWatch, process_start_time


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_killed_rank_is_reported_once_and_a_finished_one_never():
    lost, finished, alive = _sleeper(), _sleeper(), _sleeper()
    watch = RankWatch()
    for rank, proc in enumerate((lost, finished, alive), start=1):
        watch.add(rank, socket.gethostname(), proc.pid)
    assert watch.newly_lost() == []
    watch.finished.add(2)  # said goodbye before exiting
    for proc in (lost, finished):
        proc.kill()
        proc.wait()
    assert watch.newly_lost() == [1]
    assert watch.newly_lost() == []  # reported once
    assert watch.describe(1) == f"rank 1 (pid {lost.pid} on {socket.gethostname()})"
    alive.kill()
    alive.wait()


def test_ranks_on_other_hosts_count_as_alive():
    watch = RankWatch()
    watch.add(3, "some-other-host", 999_999_999)
    assert watch.newly_lost() == []


def test_a_reused_pid_is_not_the_same_process():
    proc = _sleeper()
    watch = RankWatch()
    watch.add(1, socket.gethostname(), proc.pid)
    watch.processes[1].start_time = (process_start_time(proc.pid) or 0) - 1  # as if reused
    assert watch.newly_lost() == [1]
    proc.kill()
    proc.wait()


def test_zombies_count_as_dead():
    proc = _sleeper()
    os.kill(proc.pid, signal.SIGKILL)
    zombie, deadline = psutil.Process(proc.pid), time.monotonic() + 10
    while zombie.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)  # dead, not reaped yet: a zombie
    assert zombie.status() == psutil.STATUS_ZOMBIE
    assert process_start_time(proc.pid) is None
    proc.wait()


def _run_with_watchdog(body: str, timeout: float) -> subprocess.CompletedProcess:
    code = ("from dask_mpi_lx.mpi.start_watchdog import mpi_start_watchdog\n"
            f"with mpi_start_watchdog({timeout}):\n    {body}\nprint('AFTER')\n")
    env = {**os.environ, "OMPI_COMM_WORLD_SIZE": "1"}  # as under mpirun: the watchdog is on
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=env)


def test_watchdog_ends_a_process_stuck_while_mpi_starts():
    t0 = time.monotonic()
    result = _run_with_watchdog("import time; time.sleep(30)", 1.0)
    assert result.returncode == -signal.SIGKILL
    assert "MPI did not start within 1s" in result.stderr
    assert time.monotonic() - t0 < 10


def test_watchdog_is_off_outside_open_mpi():
    code = ("import os\nfrom dask_mpi_lx.mpi.start_watchdog import mpi_start_watchdog\n"
            "with mpi_start_watchdog(0.5):\n    import time; time.sleep(2)\nprint('AFTER')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMPI_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 0 and "AFTER" in result.stdout, result.stderr


def test_watchdog_leaves_a_prompt_start_alone():
    result = _run_with_watchdog("pass", 5.0)
    assert result.returncode == 0 and "AFTER" in result.stdout
    assert result.stderr == ""


def test_a_rank_that_exits_after_being_told_to_stop_is_finished_not_lost():
    proc = _sleeper()
    watch = RankWatch()
    watch.add(2, socket.gethostname(), proc.pid)
    proc.kill()
    proc.wait()
    assert watch.exited({2}) == {2}
    assert watch.newly_lost() == [] and watch.lost == set()
