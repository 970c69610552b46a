"""Seeing from /proc when a process listens on a TCP port (rank 0 waits for Jupyter's)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from dask_mpi_lx.launcher.port_watch import listens, wait_until_listening

# listens once told to on stdin (the test checks "not yet" first, without a timed guess)
LISTENER = ("import socket, sys, time; sys.stdin.readline(); s = socket.socket(); "
            "s.bind(('127.0.0.1', 0)); s.listen(); print('LISTENING', flush=True); time.sleep(30)")


def test_a_process_is_seen_once_it_listens():
    proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert not listens(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert asyncio.run(wait_until_listening(proc.pid, timeout=20))
        assert proc.stdout.readline().strip() == "LISTENING"
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_exits_without_listening_ends_the_wait():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    assert asyncio.run(wait_until_listening(proc.pid, timeout=20)) is False
    proc.wait()
