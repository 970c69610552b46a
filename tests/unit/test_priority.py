"""Which Dask ranks yield the CPU to the notebook (runtime/priority.py), in a child process
so that this test process keeps its own priority."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def niceness_after(host: str | None, niceness: int) -> tuple[int, int]:
    code = ("import os, sys; from dask_mpi_lx.runtime.priority import yield_to_notebook;"
            "before = os.nice(0);"
            "got = yield_to_notebook(None if sys.argv[1] == '-' else sys.argv[1], int(sys.argv[2]));"
            "print(before, got, os.nice(0))")
    out = subprocess.run([sys.executable, "-c", code, host or "-", str(niceness)],
                         capture_output=True, text=True, check=True).stdout.split()
    before, got, now = map(int, out)
    assert got == now
    return before, now


def test_a_rank_on_the_notebooks_host_runs_nicer():
    before, now = niceness_after(socket.gethostname(), 10)
    assert now == min(before + 10, 19)


def test_a_rank_on_another_host_keeps_its_priority():
    before, now = niceness_after("another-node", 10)
    assert now == before


def test_zero_or_an_unknown_notebook_host_changes_nothing():
    assert niceness_after(socket.gethostname(), 0)[1] == os.nice(0)
    assert niceness_after(None, 10)[1] == os.nice(0)
