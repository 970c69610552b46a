"""Rank 0's child (the Jupyter server) dies with rank 0, started without `preexec_fn`
(deadlock-prone in a process with threads, and MPI starts threads in rank 0)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import psutil

from dask_mpi_lx.launcher import supervisor
from dask_mpi_lx.launcher.pdeathsig_exec import NOT_STARTED
from dask_mpi_lx.launcher.supervisor import PDEATHSIG_EXEC, Signals, _run_child
from tests.conftest import ROOT

# the child reports its parent-death signal (prctl PR_GET_PDEATHSIG)
REPORT = """
import ctypes, json, os, sys
sig = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)
print(json.dumps({'pid': os.getpid(), 'pdeathsig': sig.value}), flush=True)
if len(sys.argv) > 1:
    import time; time.sleep(120)
"""


async def _run(cmd: list[str]) -> int:
    return await _run_child(cmd, dict(os.environ), Signals())


def test_the_child_is_started_without_preexec_fn(monkeypatch):
    seen = {}
    real = asyncio.create_subprocess_exec

    async def spy(*args, **kwargs):
        seen.update(kwargs, argv=args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(supervisor.asyncio, "create_subprocess_exec", spy)
    assert asyncio.run(_run([sys.executable, "-c", "pass"])) == 0
    assert "preexec_fn" not in seen
    assert seen["argv"][-3:] == (sys.executable, "-c", "pass")


def test_the_child_gets_sigterm_as_its_parent_death_signal(capfd):
    assert asyncio.run(_run([sys.executable, "-c", REPORT])) == 0
    facts = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert facts["pdeathsig"] == signal.SIGTERM


def test_the_command_does_not_inherit_pythons_ignored_sigpipe(capfd):
    """The wrapper is Python, which ignores SIGPIPE; a shell pipeline in the command
    must not inherit that (subprocess restored it for the old preexec_fn child)."""
    assert asyncio.run(_run(["sh", "-c", "grep SigIgn /proc/$$/status"])) == 0
    ignored = int(capfd.readouterr().out.split()[-1], 16)
    assert ignored & (1 << (signal.SIGPIPE - 1)) == 0


def test_the_child_ends_when_rank0_is_killed(tmp_path):
    """rank 0 stand-in: runs the child as the supervisor does, then dies by SIGKILL."""
    out = tmp_path / "child.json"
    code = ("import asyncio, os, sys\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from dask_mpi_lx.launcher.supervisor import Signals, _run_child\n"
            "async def main():\n"
            f"    return await _run_child([sys.executable, '-c', {REPORT!r}, 'wait'],"
            " dict(os.environ), Signals())\n"
            "asyncio.run(main())\n")
    with out.open("w") as f:
        rank0 = subprocess.Popen([sys.executable, "-c", code], stdout=f)
    try:
        deadline = time.monotonic() + 30
        while not out.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the child's report, not a timed guess
        child = psutil.Process(json.loads(out.read_text())["pid"])
        assert child.ppid() == rank0.pid
        rank0.kill()
        rank0.wait()
        child.wait(timeout=10)  # raises psutil.TimeoutExpired if it outlived rank 0
    finally:
        rank0.kill()
        rank0.wait()


def test_the_wrapper_runs_nothing_when_the_parent_is_already_gone(tmp_path):
    """Rank 0 died between the fork and the prctl (pid 1 stands for "not my parent")."""
    flag = tmp_path / "ran"
    result = subprocess.run([sys.executable, "-I", "-S", str(PDEATHSIG_EXEC), "1",
                             "touch", str(flag)], capture_output=True)
    assert result.returncode == 128 + signal.SIGTERM
    assert not flag.exists()


def test_a_missing_command_is_named_and_exits_127(caplog):
    assert asyncio.run(_run(["/nonexistent/jupyterhub"])) == 127
    assert "cannot start '/nonexistent/jupyterhub'" in caplog.text


def test_the_wrapper_names_a_command_it_cannot_exec(tmp_path):
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\n")
    result = subprocess.run([sys.executable, "-I", "-S", str(PDEATHSIG_EXEC),
                             str(psutil.Process().pid), str(not_executable)],
                            capture_output=True, text=True)
    assert result.returncode == NOT_STARTED
    assert f"cannot start {str(not_executable)!r}" in result.stderr
