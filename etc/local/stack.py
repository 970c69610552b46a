"""The local stack: single-node Slurm (munge, slurmctld, slurmd) and a JupyterHub using
Dask-MPI-LX, started as root without systemd. Idempotent; stops only what it started (PIDs).

    python etc/local/stack.py up      # start (or keep) everything, print URL and credentials
    python etc/local/stack.py down    # stop the hub, cancel jobs, stop Slurm and munge
    python etc/local/stack.py status
    python etc/local/stack.py demo    # up, print the URL and credentials, down on Ctrl-C
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DASK_MPI_LX_VENV", sys.prefix))
STATE = Path(os.environ.get("DASK_MPI_LX_STATE", "/srv/dask-mpi-lx"))
HUB_DIR = STATE / "hub"
HUB_PORT = int(os.environ.get("DASK_MPI_LX_HUB_PORT", "8000"))
HUB_URL = f"http://127.0.0.1:{HUB_PORT}"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by dask-mpi-lx etc/local/stack.py"
USERS = ("alice", "bob")
PIDS = {"munged": Path("/run/munge/munged.pid"), "slurmctld": Path("/run/slurm/slurmctld.pid"),
        "slurmd": Path("/run/slurm/slurmd.pid"), "jupyterhub": HUB_DIR / "jupyterhub.pid"}


def say(msg: str) -> None:
    print(f">> {msg}", flush=True)


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stdout}"
                         f"{result.stderr}")
    return result


def running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (and our own child is reaped)."""
    with contextlib.suppress(ChildProcessError):  # reaps it if it is our child
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def alive(name: str) -> int | None:
    try:
        pid = int(PIDS[name].read_text().split()[0])
    except (OSError, ValueError):
        return None
    return pid if running(pid) else None


def wait(what: str, ok, timeout: float = 60, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(step)
    raise SystemExit(f"{what} not ready after {timeout:.0f}s")


# ---------------------------------------------------------------- Slurm
def slurm_conf_text() -> str:
    host = socket.gethostname().split(".")[0]
    cpus = int(os.environ.get("DASK_MPI_LX_SLURM_CPUS", os.cpu_count() * 4))
    mem = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.9)
    return f"""{MARK}
ClusterName=dask-mpi-lx
SlurmctldHost={host}
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
KillWait=5
InactiveLimit=0
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def start_slurm() -> None:
    if SLURM_CONF.exists() and MARK not in SLURM_CONF.read_text():
        say(f"{SLURM_CONF} exists and is not ours: using it as it is")
    else:
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(slurm_conf_text())
    key = Path("/etc/munge/munge.key")
    if not key.exists() or key.stat().st_size == 0:
        sh("mungekey", "--create", f"--keyfile={key}")
    sh("chown", "munge:munge", str(key))
    key.chmod(0o400)
    for d, owner in (("/run/munge", "munge"), ("/var/spool/slurmctld", "slurm"),
                     ("/var/log/slurm", "slurm"), ("/run/slurm", "slurm"),
                     ("/var/spool/slurmd", "root")):
        sh("install", "-d", "-o", owner, "-g", owner, "-m", "0755", d)
    if not alive("munged"):
        say("starting munged")
        sh("runuser", "-u", "munge", "--", "/usr/sbin/munged")
    wait("munge", lambda: subprocess.run("munge -n | unmunge", shell=True,
                                         capture_output=True).returncode == 0)
    if not alive("slurmctld"):
        say("starting slurmctld")
        sh("/usr/sbin/slurmctld", "-c")
    wait("slurmctld", lambda: "is UP" in sh("scontrol", "ping", check=False).stdout)
    if not alive("slurmd"):
        say("starting slurmd")
        sh("/usr/sbin/slurmd")
    host = socket.gethostname().split(".")[0]

    def node_up() -> bool:
        state = sh("sinfo", "-h", "-n", host, "-o", "%t", check=False).stdout.strip()
        if state.startswith(("down", "drain")):
            sh("scontrol", "update", f"nodename={host}", "state=resume", check=False)
        return state in ("idle", "mix", "alloc")

    wait("the Slurm node", node_up)
    say("Slurm ready: " + sh("sinfo", "-h").stdout.strip())


# ---------------------------------------------------------------- users, proxy, hub
def ensure_users() -> None:
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            say(f"creating user {user}")
            sh("useradd", "-m", "-s", "/bin/bash", user)


def ensure_proxy() -> None:
    if shutil.which("configurable-http-proxy"):
        return
    say("installing configurable-http-proxy (npm)")
    sh("npm", "install", "-g", "--silent", "configurable-http-proxy@5.3.0")


def lab_settings() -> None:
    """No news pop-up in Lab (the demo and browser tests see a clean page)."""
    settings = VENV / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps({
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                        "checkForUpdates": False}}))


def secrets_file() -> dict:
    path = HUB_DIR / "secrets.json"
    if not path.exists():
        HUB_DIR.mkdir(parents=True, exist_ok=True)
        HUB_DIR.chmod(0o700)
        data = {"api_token": secrets.token_hex(32), "user_password": "dask-mpi-lx-demo"}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
    return json.loads(path.read_text())


def hub_up() -> bool:
    try:
        with urllib.request.urlopen(f"{HUB_URL}/hub/api/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_hub() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    secrets_file()
    if alive("jupyterhub") and hub_up():
        say(f"hub already running (pid {alive('jupyterhub')})")
        return
    say("starting JupyterHub (with configurable-http-proxy)")
    env = {**os.environ, "DASK_MPI_LX_VENV": str(VENV), "DASK_MPI_LX_HUB_DIR": str(HUB_DIR),
           "DASK_MPI_LX_HUB_PORT": str(HUB_PORT),
           "PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
    log = open(HUB_DIR / "hub.log", "ab")  # noqa: SIM115 (kept by the daemon)
    subprocess.Popen([str(VENV / "bin" / "jupyterhub"), "-f", str(HERE / "jupyterhub_config.py")],
                     cwd=HUB_DIR, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                     start_new_session=True)
    wait("JupyterHub", hub_up, timeout=90, step=0.5)
    say(f"hub ready at {HUB_URL} (log: {HUB_DIR / 'hub.log'})")


def up() -> None:
    t0 = time.monotonic()
    ensure_users()
    ensure_proxy()
    lab_settings()
    start_slurm()
    start_hub()
    s = secrets_file()
    say(f"stack up in {time.monotonic() - t0:.1f}s")
    print(json.dumps({"hub_url": HUB_URL, "users": list(USERS),
                      "password": s["user_password"], "hub_dir": str(HUB_DIR)}))


def stop_pid(name: str, timeout: float = 15) -> None:
    pid = alive(name)
    if not pid:
        return
    say(f"stopping {name} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return
        time.sleep(0.2)
    say(f"{name} did not stop in {timeout:.0f}s: SIGKILL")
    os.kill(pid, signal.SIGKILL)


def down() -> None:
    stop_pid("jupyterhub")
    proxy = HUB_DIR / "proxy.pid"
    if proxy.exists():
        PIDS["proxy"] = proxy
        stop_pid("proxy")
    if alive("slurmctld"):
        jobs = sh("squeue", "-h", "-o", "%i", check=False).stdout.split()
        if jobs:
            say(f"cancelling jobs {' '.join(jobs)}")
            sh("scancel", *jobs, check=False)
            time.sleep(1)
    for name in ("slurmd", "slurmctld", "munged"):
        stop_pid(name)
    say("stack down")


def demo() -> None:
    """`make demo`: bring everything up, say where to go, run until interrupted."""
    up()
    s = secrets_file()
    print(f"""
  Dask-MPI-LX demo is running.
    Open      {HUB_URL}/hub/login
    Log in as alice (or bob), password: {s['user_password']}
    On the options page pick e.g. 6 cores: Jupyter + a scheduler + 4 Dask workers.
    In Lab, the Dask tab (left bar) lists "MPI job <id>: 4 workers"; Client() just connects.
  Press Ctrl-C to stop everything (or run `make demo-stop` from another shell).
""", flush=True)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.5)
    down()


def status() -> None:
    for name in PIDS:
        print(f"{name:12s} {'pid ' + str(alive(name)) if alive(name) else 'stopped'}")
    print(f"{'hub api':12s} {'up' if hub_up() else 'down'} ({HUB_URL})")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: it starts munge, Slurm and a hub that spawns as users")
    {"up": up, "down": down, "status": status, "demo": demo}[sys.argv[1] if len(sys.argv) > 1 else "status"]()
