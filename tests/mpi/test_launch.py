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
    assert facts["labextension_factory"]["class"] == "lab_cluster"
    assert facts["labextension_initial"][0]["name"].endswith(": 3 workers")


def test_job_files_private(report):
    _, facts = report
    assert facts["job_dir_mode"] == "0o700"
    assert facts["dask_config_mode"] == "0o700"
    assert facts["files"], "the job directory holds the dask config and TLS files"
    assert set(facts["files"].values()) == {"0o600"}
    home_config = Path.home() / ".config" / "dask" / "dask-mpi-lx-job.yaml"
    assert not home_config.exists()


def test_dask_in_the_kernels_spills_in_the_jobs_private_directory(report):
    """Not /tmp/dask-scratch-space: made 0755 by the first user, it blocks the next one."""
    _, facts = report
    scratch = os.path.join(facts["job_dir"], "scratch")
    assert facts["temporary_directory"] == scratch
    assert facts["local_worker_dir"].startswith(scratch + "/"), facts["local_worker_dir"]
    assert facts["files"] and oct(0o700) == facts["job_dir_mode"]


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


def test_dask_ranks_on_the_notebooks_host_run_nicer_than_the_notebook(report):
    _, facts = report
    nice = facts["notebook_nice"] + 10  # mpi-lx.notebook-host-nice
    assert facts["worker_nice"] == [nice] * 3  # the worker processes inherit it
    assert facts["scheduler_nice"] == nice


def test_notebook_host_nice_0_keeps_the_dask_ranks_priority(dask_mpi_lx_cmd, probe):
    result = mpirun.run([*dask_mpi_lx_cmd, "launch", "--notebook-host-nice", "0", "--",
                         *probe, "report"], np=3)
    assert result.returncode == 0, result.describe()
    facts = probe_facts(result)
    assert facts["worker_nice"] == [facts["notebook_nice"]]
    assert facts["scheduler_nice"] == facts["notebook_nice"]


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


# Connects to a scheduler and asks for its identity: "answered", or "refused" with the
# exception's type and what caused it.
IDENTITY = r'''
import asyncio, ssl
from distributed.comm import connect

def identity(address, **connection_args):
    async def ask():
        comm = await connect(address, timeout="5s", **connection_args)
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            comm.abort()
    try:
        asyncio.run(ask())
        return ["answered"]
    except Exception as e:
        return ["refused", type(e).__name__, repr(e.__cause__)]

def keyless_context(ca_file):
    """Trusts the job's CA, presents no certificate of its own."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False
    return ctx
'''

KEYLESS = IDENTITY + r'''
import json, os
import dask.config
from distributed import Client
addr = os.environ["DASK_SCHEDULER_ADDRESS"]
outcomes = {
    "tcp": identity("tcp://" + addr.split("://")[1]),
    "tls-nokey": identity(addr, ssl_context=keyless_context(
        dask.config.get("distributed.comm.tls.ca-file"))),
}
with Client() as c:
    outcomes["job-client"] = c.submit(sum, [1, 2]).result()
    outcomes["clients"] = len(c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients)))
print("OUTCOMES", json.dumps(outcomes))
'''


def _keyless_outcomes(dask_mpi_lx_cmd: list[str], env: dict | None = None) -> dict:
    result = mpirun.run(mpirun.notebook(dask_mpi_lx_cmd, KEYLESS), np=3, timeout=120, env=env)
    assert result.returncode == 0, result.describe()
    line = next(x for x in result.stdout.splitlines() if x.startswith("OUTCOMES"))
    return json.loads(line[len("OUTCOMES "):])


def test_plain_tcp_and_keyless_tls_clients_are_refused(dask_mpi_lx_cmd):
    """A client that trusts the job's CA but has no certificate: refused by the scheduler
    (TLS alert "certificate required"), not by its own check of the server."""
    outcomes = _keyless_outcomes(dask_mpi_lx_cmd)
    assert outcomes["tcp"][:2] == ["refused", "CommClosedError"], outcomes
    assert outcomes["tls-nokey"][:2] == ["refused", "CommClosedError"], outcomes
    # the scheduler's TLS alert, or its close before the client read the alert
    assert ("CERTIFICATE_REQUIRED" in outcomes["tls-nokey"][2]
            or outcomes["tls-nokey"][2].startswith("SSLEOFError")), outcomes
    assert outcomes["job-client"] == 3
    # only the job's own client ever registered (the scheduler's internal one aside)
    assert outcomes["clients"] <= 2


def test_keyless_client_check_fails_when_client_certificates_are_not_required(dask_mpi_lx_cmd):
    """Negative control: with the scheduler's client-certificate requirement switched off
    (a preload), the keyless client of the test above gets in, so that test can fail."""
    preload = Path(__file__).with_name("no_client_cert_preload.py")
    outcomes = _keyless_outcomes(dask_mpi_lx_cmd,
                                 {"DASK_DISTRIBUTED__SCHEDULER__PRELOAD": str(preload)})
    assert outcomes["tls-nokey"] == ["answered"], outcomes
    assert outcomes["tcp"][:2] == ["refused", "CommClosedError"], outcomes


OWN_KEY = IDENTITY + r'''
import hashlib, json, os, sys, time
import dask.config
from distributed.security import Security
mine, peer_file, done_file = os.environ["DASK_SCHEDULER_ADDRESS"], sys.argv[1], sys.argv[2]
tls = dask.config.get("distributed.comm.tls")
facts = {"address": mine, "pid": os.getpid(),
         "ca": hashlib.sha256(open(tls["ca-file"], "rb").read()).hexdigest(),
         "key": hashlib.sha256(open(tls["client"]["key"], "rb").read()).hexdigest()}
with open(peer_file + ".mine." + str(os.getpid()), "w") as f:
    json.dump(facts, f)
os.rename(peer_file + ".mine." + str(os.getpid()), peer_file + "." + str(os.getpid()))
deadline = time.time() + 90
while time.time() < deadline:  # wait for the other job's facts
    others = [p for p in os.listdir(os.path.dirname(peer_file))
              if p.startswith(os.path.basename(peer_file) + ".") and ".mine." not in p
              and p != os.path.basename(peer_file) + "." + str(os.getpid())]
    if others:
        break
    time.sleep(0.1)
other = json.load(open(os.path.join(os.path.dirname(peer_file), others[0])))
own_context = Security().get_connection_args("client")["ssl_context"]
facts["with_my_key_to_mine"] = identity(mine, ssl_context=own_context)
facts["with_my_key_to_other"] = identity(other["address"], ssl_context=own_context)
facts["other"] = other
print("FACTS", json.dumps(facts), flush=True)
open(done_file + "." + str(os.getpid()), "w").close()
while len([p for p in os.listdir(os.path.dirname(done_file))
           if p.startswith(os.path.basename(done_file) + ".")]) < 2 and time.time() < deadline:
    time.sleep(0.1)  # the other job still asks this job's scheduler
'''


def test_each_job_gets_its_own_key(dask_mpi_lx_cmd, tmp_path):
    """Two jobs at once: different CAs and keys, and one job's key opens only its own
    scheduler."""
    argv = mpirun.notebook(dask_mpi_lx_cmd, OWN_KEY)
    argv += [str(tmp_path / "facts"), str(tmp_path / "done")]
    jobs = [mpirun.start(argv, np=3) for _ in range(2)]
    outputs = []
    try:
        for job in jobs:
            out, err = job.communicate(timeout=150)
            assert job.returncode == 0, f"{out}\n{err}"
            outputs.append(json.loads(next(x for x in out.splitlines()
                                           if x.startswith("FACTS"))[len("FACTS "):]))
    finally:
        for job in jobs:
            mpirun.stop_group(job)
    a, b = outputs
    assert a["ca"] != b["ca"] and a["key"] != b["key"]
    assert a["other"]["ca"] == b["ca"] and b["other"]["ca"] == a["ca"]
    for facts in outputs:
        assert facts["with_my_key_to_mine"] == ["answered"], facts
        assert facts["with_my_key_to_other"][:2] == ["refused", "FatalCommClosedError"], facts
        assert "CERTIFICATE_VERIFY_FAILED" in facts["with_my_key_to_other"][2], facts


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


def _end_by_sigterm(proc: subprocess.Popen, within: float = 30) -> tuple[float, str, str]:
    """SIGTERM to mpirun (what scancel and walltime do); time to exit, stdout, stderr."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        mpirun.stop_group(proc)
        _, err = proc.communicate()
        pytest.fail(f"mpirun still running {within:g}s after SIGTERM\n{err}")
    return time.monotonic() - t0, out, err


def _assert_nothing_left(marker: Path, grace: float = 10) -> None:
    """No process mentions ``marker`` (the job's directory option) and no job file is in it."""
    deadline = time.monotonic() + grace
    while _processes_mentioning(str(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)  # mpirun may exit while its SIGKILLs are still being delivered
    assert _processes_mentioning(str(marker)) == []
    assert [p.name for p in marker.iterdir() if p.name.startswith("dask-mpi-lx")] == []


def _worker_spill_dirs(parent: Path) -> int:
    """How many of the worker ranks (2 and 3 of 4) have their spill directory in ``parent``."""
    return sum(1 for r in (2, 3) if list(parent.glob(f"dask-mpi-lx-*-rank{r}-*")))


SLOW_WORKER = {"DASK_DISTRIBUTED__WORKER__PRELOAD":
               str(Path(__file__).with_name("slow_worker_preload.py"))}


@pytest.mark.parametrize("worker_close", ["prompt", "slower-than-mpirun-waits"])
def test_sigterm_to_mpirun_leaves_no_process_and_no_file(dask_mpi_lx_cmd, probe, tmp_path,
                                                         worker_close):
    """Also when a worker takes longer to close than mpirun waits before its SIGKILL:
    the rank's spill directory goes first."""
    ready = tmp_path / "ready.json"
    env = {**SLOW_WORKER, "SLOW_WORKER_TEARDOWN": "5"} if worker_close != "prompt" else {}
    proc = mpirun.start([*dask_mpi_lx_cmd, "launch", "--job-directory", str(tmp_path), "--",
                         *probe, "wait", str(ready)], np=4, env=env)
    facts = _wait_for(ready, proc)
    assert facts["workers"] == ["rank-2", "rank-3"]
    assert _worker_spill_dirs(tmp_path) == 2
    elapsed, _, err = _end_by_sigterm(proc)
    _assert_nothing_left(tmp_path)
    assert elapsed < 10, f"took {elapsed:.1f}s\n{err}"


def test_sigterm_during_start_up_leaves_no_process_and_no_file(dask_mpi_lx_cmd, probe,
                                                               tmp_path):
    """scancel while the cluster starts (the workers are starting, rank 0 waits for them,
    the command has not run): every rank leaves and no file stays."""
    env = {**SLOW_WORKER, "SLOW_WORKER_SETUP": "30"}
    proc = mpirun.start([*dask_mpi_lx_cmd, "launch", "--job-directory", str(tmp_path), "--",
                         *probe, "report"], np=4, env=env)
    deadline = time.monotonic() + 60
    while _worker_spill_dirs(tmp_path) < 2 and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)  # until both workers are starting (their spill directories exist)
    assert _worker_spill_dirs(tmp_path) == 2, "the workers never started"
    elapsed, out, err = _end_by_sigterm(proc)
    assert "PROBE" not in out  # the command never ran
    assert "got SIGTERM before the command started; stopping the job" in err, err
    _assert_nothing_left(tmp_path)
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
