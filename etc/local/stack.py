"""The local stack: a batch system (Slurm: munge, slurmctld, slurmd; or OpenPBS: server,
scheduler, comm, moms) and a JupyterHub using Dask-MPI-LX, started as root without systemd.
Idempotent; stops only what it started (PIDs, and the namespaces and links recorded by
nodes.py).

    python etc/local/stack.py up [--batch slurm|pbs] [--nodes K]   # start (or keep) it all
    python etc/local/stack.py down      # stop the hub, cancel jobs, stop the batch system,
                                        # remove the simulated nodes
    python etc/local/stack.py status
    python etc/local/stack.py build --batch pbs   # build OpenPBS only (make install does)
    python etc/local/stack.py demo [--batch slurm|pbs] [--nodes K]  # up; down on Ctrl-C

With --nodes 1 (the default) this machine is the only node. With --nodes K > 1 the nodes
n1..nK are network + UTS namespaces on a bridge (nodes.py), each with its own slurmd or
pbs_mom; the controller (slurmctld, or pbs_server), the hub and the proxy stay in this host's
namespace. OpenPBS is built from the vendored source the first time (pbs.py).
"""

from __future__ import annotations

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nodes  # noqa: E402  (etc/local/nodes.py, beside this file)
import pbs  # noqa: E402  (etc/local/pbs.py)
from daemons import pid_in_file, say, stop_daemon, wait  # noqa: E402  (etc/local/daemons.py)

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DASK_MPI_LX_VENV", sys.prefix))
STATE = Path(os.environ.get("DASK_MPI_LX_STATE", "/srv/dask-mpi-lx"))
HUB_DIR = STATE / "hub"
HUB_PORT = int(os.environ.get("DASK_MPI_LX_HUB_PORT", "8000"))
HUB_URL = f"http://127.0.0.1:{HUB_PORT}"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by dask-mpi-lx etc/local/stack.py"
USERS = ("alice", "bob")
NODES_RECORD = STATE / "nodes.json"
BATCH_SYSTEMS = ("slurm", "pbs")
NODE_CPUS = int(os.environ.get("DASK_MPI_LX_NODE_CPUS", "4"))
PIDS = {"munged": Path("/run/munge/munged.pid"), "slurmctld": Path("/run/slurm/slurmctld.pid"),
        "slurmd": Path("/run/slurm/slurmd.pid"), "jupyterhub": HUB_DIR / "jupyterhub.pid"}


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stdout}"
                         f"{result.stderr}")
    return result


def alive(name: str) -> int | None:
    return pid_in_file(PIDS[name])


# ---------------------------------------------------------------- Slurm
def configured_nodes() -> int | None:
    """The node count of our slurm.conf (None: none of ours)."""
    return nodes.marked_node_count(SLURM_CONF, MARK)


def _memory_mb() -> int:
    return int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.9)


def _node_lines(count: int) -> str:
    host = socket.gethostname().split(".")[0]
    if count == 1:
        cpus = int(os.environ.get("DASK_MPI_LX_SLURM_CPUS", os.cpu_count() * 8))
        return (f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mb()} "
                f"State=UNKNOWN\nPartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE "
                "State=UP OverSubscribe=YES\n")
    mem = _memory_mb() // count
    lines = [f"NodeName={nodes.node_name(i)} NodeAddr={nodes.node_ip(i)} CPUs={NODE_CPUS} "
             f"RealMemory={mem} State=UNKNOWN" for i in range(1, count + 1)]
    return "\n".join(lines) + (f"\nPartitionName=debug Nodes=n[1-{count}] Default=YES "
                               "MaxTime=INFINITE State=UP OverSubscribe=YES\n")


def slurm_conf_text(count: int = 1) -> str:
    host = socket.gethostname().split(".")[0]
    # one node: this machine on loopback; several: the nodes reach slurmctld on the bridge,
    # and each slurmd keeps its own spool, pid and log file (%n is the node's name)
    controller = host if count == 1 else f"{host}({nodes.bridge_ip()})"
    per_node = "" if count == 1 else "-%n"
    return f"""{MARK} nodes={count}
ClusterName=dask-mpi-lx
SlurmctldHost={controller}
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd{per_node}
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd{per_node}.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd{per_node}.log
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
{_node_lines(count)}"""


def node_pid_file(count: int, i: int) -> Path:
    return Path("/run/slurm/slurmd.pid") if count == 1 else Path(f"/run/slurm/slurmd-n{i}.pid")


def slurmd_names(count: int) -> list[str]:
    """The PIDS keys of the slurmds of a stack with ``count`` nodes."""
    if count == 1:
        return ["slurmd"]
    for i in range(1, count + 1):
        PIDS[f"slurmd-n{i}"] = node_pid_file(count, i)
    return [f"slurmd-n{i}" for i in range(1, count + 1)]


def start_slurm(count: int = 1) -> None:
    if SLURM_CONF.exists() and configured_nodes() is None:
        say(f"{SLURM_CONF} exists and is not ours: using it as it is")
    else:
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(slurm_conf_text(count))
    key = Path("/etc/munge/munge.key")
    if not key.exists() or key.stat().st_size == 0:
        sh("mungekey", "--create", f"--keyfile={key}")
    sh("chown", "munge:munge", str(key))
    key.chmod(0o400)
    spools = ["/var/spool/slurmd"] if count == 1 else [
        f"/var/spool/slurmd-n{i}" for i in range(1, count + 1)]
    for d, owner in (("/run/munge", "munge"), ("/var/spool/slurmctld", "slurm"),
                     ("/var/log/slurm", "slurm"), ("/run/slurm", "slurm"),
                     *((spool, "root") for spool in spools)):
        sh("install", "-d", "-o", owner, "-g", owner, "-m", "0755", d)
    if count > 1:
        made = nodes.create_nodes(count, NODES_RECORD)
        say(f"simulated nodes: {', '.join(made.namespaces) or 'already there'} on "
            f"{nodes.BRIDGE} ({nodes.SUBNET}.0/24)")
    if not alive("munged"):
        say("starting munged")
        sh("runuser", "-u", "munge", "--", "/usr/sbin/munged")
    wait("munge", lambda: subprocess.run("munge -n | unmunge", shell=True,
                                         capture_output=True).returncode == 0)
    if not alive("slurmctld"):
        say("starting slurmctld")
        sh("/usr/sbin/slurmctld", "-c")
    wait("slurmctld", lambda: "is UP" in sh("scontrol", "ping", check=False).stdout)
    for i, name in enumerate(slurmd_names(count), start=1):
        if alive(name):
            continue
        say(f"starting {name}")
        if count == 1:
            sh("/usr/sbin/slurmd")
        else:
            sh(*nodes.in_node_argv(i, ["/usr/sbin/slurmd", "-N", nodes.node_name(i)]))

    def nodes_up() -> bool:
        states = sh("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout.split("\n")
        pairs = [line.split() for line in states if line.strip()]
        for name, state in pairs:
            if state.startswith(("down", "drain")):
                sh("scontrol", "update", f"nodename={name}", "state=resume", check=False)
        return len(pairs) == count and all(st in ("idle", "mix", "alloc") for _, st in pairs)

    wait("the Slurm nodes", nodes_up)
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


def start_hub(count: int = 1, batch: str = "slurm", prologue: str = "") -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    secrets_file()
    if alive("jupyterhub") and hub_up():
        say(f"hub already running (pid {alive('jupyterhub')})")
        return
    say(f"starting JupyterHub (with configurable-http-proxy) for {batch}")
    extra = f"{pbs.EXEC}/bin:" if batch == "pbs" else ""
    env = {**os.environ, "DASK_MPI_LX_VENV": str(VENV), "DASK_MPI_LX_HUB_DIR": str(HUB_DIR),
           "DASK_MPI_LX_HUB_PORT": str(HUB_PORT), "DASK_MPI_LX_NODES": str(count),
           "DASK_MPI_LX_BRIDGE_IP": nodes.bridge_ip(), "DASK_MPI_LX_BATCH": batch,
           "DASK_MPI_LX_LAUNCHER_PROLOGUE": prologue, "DASK_MPI_LX_PBS_EXEC": str(pbs.EXEC),
           "PATH": f"{VENV}/bin:{extra}/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
    log = open(HUB_DIR / "hub.log", "ab")  # noqa: SIM115 (kept by the daemon)
    subprocess.Popen([str(VENV / "bin" / "jupyterhub"), "-f", str(HERE / "jupyterhub_config.py")],
                     cwd=HUB_DIR, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                     start_new_session=True)
    wait("JupyterHub", hub_up, timeout=90, step=0.5)
    say(f"hub ready at {HUB_URL} (log: {HUB_DIR / 'hub.log'})")


def running_shape() -> tuple[str, int] | None:
    """(batch system, nodes) of the stack that runs now; None when none runs."""
    if pbs.server_running():
        return "pbs", pbs.configured_nodes() or 1
    if alive("slurmctld"):
        return "slurm", configured_nodes() or 1
    if alive("jupyterhub"):
        return "unknown", 0
    return None


def up(count: int = 1, batch: str = "slurm") -> None:
    t0 = time.monotonic()
    current = running_shape()
    if current is not None and current != (batch, count):
        say(f"the stack runs {current[0]} with {current[1]} node(s); restarting it as {batch} "
            f"with {count}")
        down()
    ensure_users()
    ensure_proxy()
    lab_settings()
    prologue = ""
    if batch == "pbs":
        prologue = pbs.start(count, NODES_RECORD, STATE)
    else:
        start_slurm(count)
    start_hub(count, batch, prologue)
    s = secrets_file()
    say(f"stack up in {time.monotonic() - t0:.1f}s")
    print(json.dumps({"hub_url": HUB_URL, "users": list(USERS), "nodes": count, "batch": batch,
                      "password": s["user_password"], "hub_dir": str(HUB_DIR),
                      "launcher_prologue": prologue}))


def stop_pid(name: str, timeout: float = 15) -> None:
    stop_daemon(name, alive(name), timeout)


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
            deadline = time.monotonic() + 20
            while sh("squeue", "-h", "-o", "%i", check=False).stdout.split() and \
                    time.monotonic() < deadline:
                time.sleep(0.5)
    for name in [*slurmd_names(configured_nodes() or 1), "slurmctld", "munged"]:
        stop_pid(name)
    pbs_nodes = pbs.configured_nodes() or 1
    pbs.stop(pbs_nodes)
    nodes.remove_nodes(NODES_RECORD)
    pbs.remove_config(pbs_nodes)
    say("stack down")


def demo(count: int = 1, batch: str = "slurm") -> None:
    """`make demo`: bring everything up, say where to go, run until interrupted."""
    up(count, batch)
    s = secrets_file()
    shape = ("" if count == 1 else
             f"\n    {count} simulated nodes n1..n{count} ({NODE_CPUS} cores each): pick 2 nodes "
             "and 8 cores for a job on n1 and n2.")
    print(f"""
  Dask-MPI-LX demo is running ({"OpenPBS " + pbs.VERSION if batch == "pbs" else "Slurm"}).
    Open      {HUB_URL}/hub/login
    Log in as alice (or bob), password: {s['user_password']}
    On the options page pick e.g. 6 cores: Jupyter + a scheduler + 4 Dask workers.{shape}
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
    shape = running_shape()
    count = configured_nodes() or 1
    slurmd_names(count)
    for name in PIDS:
        print(f"{name:12s} {'pid ' + str(alive(name)) if alive(name) else 'stopped'}")
    for name, pid in pbs.head_pids().items():
        print(f"{name:12s} {'pid ' + str(pid) if pid else 'stopped'}")
    print(f"{'hub api':12s} {'up' if hub_up() else 'down'} ({HUB_URL})")
    print(f"{'batch':12s} {shape[0] if shape else 'none'}")
    print(f"{'nodes':12s} {shape[1] if shape else count}")


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="status",
                        choices=["up", "down", "status", "demo", "build"])
    parser.add_argument("--nodes", type=int, default=1,
                        help="simulated nodes (1: this machine is the only node)")
    parser.add_argument("--batch", default=os.environ.get("DASK_MPI_LX_BATCH", "slurm"),
                        help="the batch system: slurm (default) or pbs (OpenPBS)")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 8:
        parser.error(f"--nodes: got {args.nodes}; expected 1 to 8")
    if args.batch not in BATCH_SYSTEMS:
        parser.error(f"--batch: got {args.batch[:20]!r}; expected slurm or pbs")
    if os.geteuid() != 0:
        raise SystemExit("run as root: it starts the batch system and a hub that spawns as users")
    if args.command == "build":  # what `up` would build first (OpenPBS, once per machine)
        if args.batch == "pbs":
            pbs.ensure_built()
    elif args.command in ("up", "demo"):
        {"up": up, "demo": demo}[args.command](args.nodes, args.batch)
    else:
        {"down": down, "status": status}[args.command]()


if __name__ == "__main__":
    main(sys.argv[1:])
