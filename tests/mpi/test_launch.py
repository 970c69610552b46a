"""`dask-mpi-lx launch` under real Open MPI: roles, environment, TLS, exit codes, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import mpirun

pytestmark = pytest.mark.mpi

TOKEN = "hub-secret-token-for-tests"


def probe_facts(result: mpirun.Run) -> dict:
    for line in result.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[len("PROBE "):])
    pytest.fail("the probe printed no facts\n" + result.describe())


@pytest.fixture(scope="module")
def report(request) -> tuple[mpirun.Run, dict]:
    """One 5-rank launch whose child reports everything a notebook sees."""
    import sys

    from tests.conftest import ROOT

    exe = Path(sys.executable).parent / "dask-mpi-lx"
    probe = [sys.executable, str(ROOT / "tests" / "probes" / "notebook_probe.py"), "report"]
    result = mpirun.run([str(exe), "launch", "--", *probe], np=5, timeout=120,
                        env={"JUPYTERHUB_API_TOKEN": TOKEN, "JPY_API_TOKEN": TOKEN})
    assert result.returncode == 0, result.describe()
    return result, probe_facts(result)


def test_done_when_command_prints_two(dask_mpi_lx_cmd):
    code = ("from distributed import Client; c = Client(); "
            "print(len(c.scheduler_info()['workers']))")

    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, code), np=4)
    assert result.returncode == 0, result.describe()
    assert result.stdout.strip().splitlines()[-1] == "2", result.describe()


def test_roles_scheduler_on_rank1_and_workers_named_by_rank(report):
    result, facts = report
    assert facts["workers"] == ["rank-2", "rank-3", "rank-4"]
    assert "rank 1/5 scheduler" in result.stderr
    for r in (2, 3, 4):
        assert f"rank {r}/5 worker" in result.stderr


def test_child_env_scrubbed_and_pointed_at_cluster(report):
    _, facts = report
    assert facts["mpi_vars"] == []
    assert facts["address"].startswith("tls://")
    assert facts["hub_token"] == TOKEN  # the notebook keeps its hub credentials
    assert facts["labextension_factory"]["class"] == "MPICluster"
    assert facts["labextension_initial"][0]["name"].endswith(": 3 workers")


def test_job_files_private(report):
    _, facts = report
    assert facts["job_dir_mode"] == "0o700"
    assert facts["dask_config_mode"] == "0o700"
    assert facts["files"], "the job directory holds the dask config and TLS files"
    assert set(facts["files"].values()) == {"0o600"}
    home_config = Path.home() / ".config" / "dask" / "dask-mpi-lx-job.yaml"
    assert not home_config.exists()


def test_job_files_removed_after_the_job(report):
    _, facts = report
    assert not os.path.exists(facts["job_dir"])


def test_tls_required_and_used(report):
    _, facts = report
    assert facts["config_tls"] is True
    assert facts["sum"] == 3


def test_single_host_job_listens_on_loopback_only(report):
    _, facts = report
    assert facts["address"].startswith("tls://127.0.0.1:")
    assert all(a.startswith("tls://127.0.0.1:") for a in facts["worker_addresses"])


def test_hub_secrets_absent_on_dask_ranks(report):
    _, facts = report
    assert facts["worker_tokens"] == [None, None, None]
    assert facts["scheduler_token"] is None
    assert facts["rank_proc_environ_has_token"] == [False] * 4
    assert facts["worker_mpi_vars"] == []


def test_child_mpi_is_a_singleton(report):
    _, facts = report
    assert facts["mpi_size"] == 1


def test_exit_code_propagates(dask_mpi_lx_cmd, probe):
    result = mpirun.run([*dask_mpi_lx_cmd, "launch", "--", *probe, "exit", "3"], np=3)
    assert result.returncode == 3, result.describe()


def test_child_start_failure_is_reported(dask_mpi_lx_cmd):
    result = mpirun.run([*dask_mpi_lx_cmd, "launch", "--", "/nonexistent/jupyterhub"], np=3)
    assert result.returncode == 127, result.describe()
    assert "cannot start '/nonexistent/jupyterhub'" in result.stderr


def test_world_too_small_still_runs_the_command(dask_mpi_lx_cmd, probe):
    result = mpirun.run([*dask_mpi_lx_cmd, "launch", "--", *probe, "report"], np=2)
    assert result.returncode == 0, result.describe()
    facts = probe_facts(result)
    assert facts["address"] is None
    assert "found 2 MPI rank(s), need at least 3" in result.stderr


def test_bad_option_names_it_and_still_runs_the_command(dask_mpi_lx_cmd, probe):
    result = mpirun.run([*dask_mpi_lx_cmd, "launch", "--nthreads", "0", "--", *probe, "report"],
                        np=3)
    assert result.returncode == 0, result.describe()
    assert "'--nthreads'" in result.stderr
    assert probe_facts(result)["address"] is None
    assert "without a Dask cluster" in result.stderr


def test_bad_config_value_names_the_key(dask_mpi_lx_cmd, probe):
    result = mpirun.run([*dask_mpi_lx_cmd, "launch", "--", *probe, "report"], np=3,
                        env={"DASK_MPI_LX__MEMORY_LIMIT": "lots"})
    assert result.returncode == 0, result.describe()
    assert "mpi-lx.memory-limit: got 'lots'" in result.stderr
    assert probe_facts(result)["address"] is None


def test_plain_tcp_and_keyless_tls_clients_are_refused(dask_mpi_lx_cmd, tmp_path):
    code = r'''
import asyncio, os, sys
from distributed import Client
from distributed.security import Security
addr = os.environ["DASK_SCHEDULER_ADDRESS"]
outcomes = {}
for label, kwargs in [
    ("tcp", dict(address="tcp://" + addr.split("://")[1], security=Security(require_encryption=False))),
    ("tls-nokey", dict(address=addr, security=Security.temporary())),
]:
    try:
        with Client(timeout="5s", **kwargs) as c:
            c.submit(sum, [1]).result(timeout=5)
        outcomes[label] = "connected"
    except Exception as e:
        outcomes[label] = "refused"
with Client() as c:
    outcomes["job-client"] = c.submit(sum, [1, 2]).result()
    outcomes["clients"] = len(c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients)))
print("OUTCOMES", outcomes)
'''

    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, code), np=3,
                        timeout=120)
    assert result.returncode == 0, result.describe()
    line = next(x for x in result.stdout.splitlines() if x.startswith("OUTCOMES"))
    outcomes = eval(line[len("OUTCOMES "):])
    assert outcomes["tcp"] == "refused"
    assert outcomes["tls-nokey"] == "refused"
    assert outcomes["job-client"] == 3
    # only the job's own client ever registered (the scheduler's internal one aside)
    assert outcomes["clients"] <= 2


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    mpirun.stop_group(proc)
    out, err = proc.communicate()
    pytest.fail(f"no ready file; exit {proc.returncode}\n{out}\n{err}")


def _processes_mentioning(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


def test_sigterm_to_mpirun_leaves_no_process_and_no_file(dask_mpi_lx_cmd, probe, tmp_path):
    ready = tmp_path / "ready.json"
    marker = str(tmp_path)
    proc = mpirun.start([*dask_mpi_lx_cmd, "launch", "--job-directory", marker, "--",
                         *probe, "wait", str(ready)], np=4)
    facts = _wait_for(ready, proc)
    assert facts["workers"] == ["rank-2", "rank-3"]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        mpirun.stop_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"mpirun still running 30s after SIGTERM\n{err}")
    elapsed = time.monotonic() - t0
    time.sleep(0.5)
    assert _processes_mentioning(marker) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("dask-mpi-lx")] == []
    assert elapsed < 10, f"took {elapsed:.1f}s\n{err}"


def test_killed_worker_process_restarts_and_notebook_lives(dask_mpi_lx_cmd, tmp_path):
    code = r'''
import os, signal, time
from distributed import Client
with Client() as c:
    c.wait_for_workers(2, timeout=30)
    before = {w["name"]: a for a, w in c.scheduler_info()["workers"].items()}
    victim = before["rank-2"]
    pid = c.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 60
    while time.time() < deadline:
        names = {w["name"]: a for a, w in c.scheduler_info()["workers"].items()}
        if "rank-2" in names and names["rank-2"] != victim:
            break
        time.sleep(0.2)
    after = {w["name"]: a for a, w in c.scheduler_info()["workers"].items()}
    print("RESULT", sorted(after), after.get("rank-2") != victim, c.submit(sum, [2, 3]).result())
'''

    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, code), np=4,
                        timeout=120)
    assert result.returncode == 0, result.describe()
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT"))
    assert line == "RESULT ['rank-2', 'rank-3'] True 5", result.describe()


def test_no_wait_starts_the_command_at_once_and_the_cluster_joins(dask_mpi_lx_cmd):
    import sys

    code = ("import time, os; t = time.time(); from distributed import Client; c = Client(); "
            "c.wait_for_workers(3, timeout=60); "
            "print('JOINED', len(c.scheduler_info()['workers']), os.environ['DASK_SCHEDULER_ADDRESS'])")
    result = mpirun.run([*dask_mpi_lx_cmd, "launch", "--no-wait-for-workers", "--",
                         sys.executable, "-c", code], np=5)
    assert result.returncode == 0, result.describe()
    assert "joining while the command starts" in result.stderr
    assert "Dask cluster ready at" in result.stderr  # logged once the scheduler answered
    line = next(x for x in result.stdout.splitlines() if x.startswith("JOINED"))
    assert line.startswith("JOINED 3 tls://127.0.0.1:"), line  # single host: loopback only
