"""OpenPBS for the local stack: built once per machine from the vendored source, then a
server (with its PostgreSQL datastore), a scheduler, a comm and the moms, started as root
without systemd.

One node: this machine is the only PBS node, named `nodes.head_name()` on the stack's bridge
(PBS refuses a host whose name resolves only to loopback). K nodes: the server, scheduler
and comm stay here, and each simulated node n1..nK (nodes.py) runs a mom of its own, with
its own PBS_HOME and conf file. `stop` ends what `start` started, by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import nodes  # etc/local/nodes.py (stack.py puts its folder on sys.path)
import psutil
from daemons import pid_in_file, say, stop_daemon, wait  # etc/local/daemons.py

HERE = Path(__file__).resolve().parent
VERSION = "23.06.06"
EXEC = Path(os.environ.get("DASK_MPI_LX_PBS_EXEC", "/opt/pbs"))
HOME = Path("/var/spool/pbs")
CONF = Path("/etc/pbs.conf")
MARK = "# written by dask-mpi-lx etc/local/pbs.py"
VENDOR = HERE.parent.parent.parent / "shared" / "vendor"
QUEUE = "workq"
BIN = [str(EXEC / "bin"), str(EXEC / "sbin")]
# Open MPI without PBS's `tm` (Debian's): node n's mom starts the remote ranks through
# pbs_tmrsh, which runs argv without a shell, while Open MPI passes one shell snippet
RSH_AGENT = '#!/bin/sh\nhost=$1; shift\nexec {exec}/bin/pbs_tmrsh "$host" /bin/sh -c "$*"\n'


def env() -> dict[str, str]:
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {**os.environ, "PATH": ":".join([*BIN, path])}


def qcmd(*argv: str, check: bool = True, stdin: str | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    """A PBS command (qmgr, qstat, pbsnodes...) as root."""
    result = subprocess.run(argv, capture_output=True, text=True, env=env(), input=stdin,
                            timeout=timeout)
    if check and result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stdout}"
                         f"{result.stderr}")
    return result


def qmgr(command: str, check: bool = True) -> subprocess.CompletedProcess:
    return qcmd(str(EXEC / "bin" / "qmgr"), "-c", command, check=check)


# ---------------------------------------------------------------- build
def installed_version() -> str | None:
    """The version of the PBS in EXEC (None: none there)."""
    qstat = EXEC / "bin" / "qstat"
    if not qstat.exists():
        return None
    out = subprocess.run([str(qstat), "--version"], capture_output=True, text=True).stdout
    return out.split("=")[-1].strip() or None


def tarball() -> Path:
    found = sorted(VENDOR.glob(f"openpbs-{VERSION}-*.tar.gz"))
    if not found:
        raise SystemExit(f"no OpenPBS {VERSION} source in {VENDOR} (the shared/vendor folder "
                         "beside the project holds it)")
    return found[-1]


def ensure_built() -> None:
    """Build OpenPBS into EXEC unless the same version is there (once per machine)."""
    have = installed_version()
    if have == VERSION:
        return
    say(f"building OpenPBS {VERSION} into {EXEC} (found: {have or 'none'}); about 8 minutes")
    t0 = time.monotonic()
    had_conf = CONF.exists()
    result = subprocess.run(["bash", str(HERE / "pbs_build.sh"), str(tarball()), str(EXEC)])
    if not had_conf:  # pbs_postinstall's own, naming this host: `start` writes ours
        CONF.unlink(missing_ok=True)
    if result.returncode:
        raise SystemExit("building OpenPBS failed (see above)")
    say(f"OpenPBS built in {time.monotonic() - t0:.0f}s")


# ---------------------------------------------------------------- configuration
def node_names(count: int) -> list[str]:
    return [nodes.head_name()] if count == 1 else [nodes.node_name(i) for i in
                                                   range(1, count + 1)]


def node_home(i: int) -> Path:
    return Path(f"/var/spool/pbs-{nodes.node_name(i)}")


def node_conf(i: int) -> Path:
    return Path(f"/etc/pbs.{nodes.node_name(i)}.conf")


def conf_text(count: int) -> str:
    head = nodes.head_name()
    return f"""{MARK} nodes={count}
PBS_SERVER={head}
PBS_START_SERVER=1
PBS_START_SCHED=1
PBS_START_COMM=1
PBS_START_MOM={1 if count == 1 else 0}
PBS_EXEC={EXEC}
PBS_HOME={HOME}
PBS_CORE_LIMIT=unlimited
PBS_SCP=/usr/bin/scp
PBS_SERVER_HOST_NAME={head}
PBS_MOM_NODE_NAME={head}
PBS_LEAF_NAME={head}
"""


def node_conf_text(i: int) -> str:
    name = nodes.node_name(i)
    return f"""{MARK}
PBS_SERVER={nodes.head_name()}
PBS_START_SERVER=0
PBS_START_SCHED=0
PBS_START_COMM=0
PBS_START_MOM=1
PBS_EXEC={EXEC}
PBS_HOME={node_home(i)}
PBS_CORE_LIMIT=unlimited
PBS_MOM_NODE_NAME={name}
PBS_LEAF_NAME={name}
PBS_LEAF_ROUTERS={nodes.head_name()}
"""


def mom_config() -> str:
    # jobs' files are on the shared file system: copy them, no scp; users' uids start at 1000
    return (f"$clienthost {nodes.head_name()}\n$restrict_user_maxsysid 999\n"
            "$usecp *:/home/ /home/\n$usecp *:/tmp/ /tmp/\n$usecp *:/srv/ /srv/\n")


def configured_nodes() -> int | None:
    """The node count of our pbs.conf (None: none of ours)."""
    return nodes.marked_node_count(CONF, MARK)


# the mom's part of PBS_HOME, as pbs_postinstall made it for the head (mode per entry)
MOM_TREE = ("aux", "checkpoint", "mom_logs", "mom_priv", "mom_priv/jobs", "mom_priv/hooks",
            "mom_priv/hooks/tmp", "spool", "undelivered")


def make_node_home(i: int) -> None:
    """node i's PBS_HOME: the head's mom tree with its modes, and the two files a mom reads."""
    home = node_home(i)
    for rel in MOM_TREE:
        source = HOME / rel
        mode = source.stat().st_mode & 0o7777 if source.exists() else 0o750
        (home / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(home / rel, mode)
    os.chmod(home, 0o755)
    for name in ("pbs_environment", "pbs_version"):
        if (HOME / name).exists():
            shutil.copy2(HOME / name, home / name)
    (home / "mom_priv" / "config").write_text(mom_config())
    node_conf(i).write_text(node_conf_text(i))


def write_rsh_agent(state: Path) -> Path:
    agent = state / "bin" / "pbs-rsh-agent"
    agent.parent.mkdir(parents=True, exist_ok=True)
    agent.parent.chmod(0o755)
    agent.write_text(RSH_AGENT.format(exec=EXEC))
    agent.chmod(0o755)
    return agent


def launcher_prologue(count: int, agent: Path) -> str:
    """Shell lines a job's script runs before `mpirun` on this machine's PBS: Debian's Open
    MPI has no `tm`, so it reads the allocation from $PBS_NODEFILE and, across nodes, starts
    its daemons through pbs_tmrsh, on the stack's own subnet."""
    lines = ['export OMPI_MCA_orte_default_hostfile="$PBS_NODEFILE"']
    if count > 1:
        subnet = f"{nodes.SUBNET}.0/24"
        lines += [f"export OMPI_MCA_plm_rsh_agent={agent}",
                  f"export OMPI_MCA_oob_tcp_if_include={subnet}",
                  f"export OMPI_MCA_btl_tcp_if_include={subnet}"]
    return "\n".join(lines)


# ---------------------------------------------------------------- daemons
def head_pids() -> dict[str, int | None]:
    return {"pbs_server": pid_in_file(HOME / "server_priv" / "server.lock"),
            "pbs_sched": pid_in_file(HOME / "sched_priv" / "sched.lock"),
            "pbs_comm": pid_in_file(HOME / "server_priv" / "comm.lock"),
            "pbs_mom": pid_in_file(HOME / "mom_priv" / "mom.lock")}


def node_mom_pid(i: int) -> int | None:
    return pid_in_file(node_home(i) / "mom_priv" / "mom.lock")


def server_up() -> bool:
    return qcmd(str(EXEC / "bin" / "qstat"), "-B", check=False, timeout=20).returncode == 0


def _init(action: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXEC / "libexec" / "pbs_init.d"), action], capture_output=True,
                          text=True, env={**env(), "PBS_CONF_FILE": str(CONF)},
                          stdin=subprocess.DEVNULL, timeout=180)


def _create_server() -> None:
    """The datastore has no server object (a first start that failed): make one."""
    say("PBS datastore has no server: pbs_server -t create")
    subprocess.run([str(EXEC / "sbin" / "pbs_server"), "-t", "create"], input="y\n", text=True,
                   capture_output=True, env=env(), timeout=120)
    wait("pbs_server", server_up, timeout=60)


def configure_server(count: int) -> None:
    """Idempotent: history for `qstat -x`, one execution queue, exactly our nodes."""
    if qmgr(f"list queue {QUEUE}", check=False).returncode:
        qmgr(f"create queue {QUEUE} queue_type=execution")
    for setting in (f"set queue {QUEUE} enabled=True", f"set queue {QUEUE} started=True",
                    f"set server default_queue={QUEUE}", "set server scheduling=True",
                    "set server job_history_enable=True", "set server flatuid=True",
                    "set server query_other_jobs=False"):
        qmgr(setting)
    out = qcmd(str(EXEC / "bin" / "pbsnodes"), "-a", "-F", "json", check=False).stdout
    with contextlib.suppress(ValueError):
        have = set(json.loads(out or "{}").get("nodes", {}))
        wanted = set(node_names(count))
        for name in sorted(have - wanted):
            qmgr(f"delete node {name}", check=False)
        for name in sorted(wanted - have):
            qmgr(f"create node {name}")
    cpus = (os.cpu_count() or 2) * 8 if count == 1 else int(
        os.environ.get("DASK_MPI_LX_NODE_CPUS", "4"))
    mem_gb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20 * 0.9) // count
    for name in node_names(count):
        # oversubscribe on purpose, as the Slurm nodes do: a 2-core machine runs 8-rank jobs
        qmgr(f"set node {name} resources_available.ncpus={cpus}")
        qmgr(f"set node {name} resources_available.mem={mem_gb}gb")


def nodes_free(count: int) -> bool:
    out = qcmd(str(EXEC / "bin" / "pbsnodes"), "-a", "-F", "json", check=False).stdout
    try:
        states = {n: v.get("state", "") for n, v in json.loads(out).get("nodes", {}).items()}
    except ValueError:
        return False
    return sorted(states) == sorted(node_names(count)) and all(
        s.split(",")[0] in ("free", "job-busy", "job-exclusive") for s in states.values())


def start(count: int, record: Path, state: Path) -> str:
    """Start (or keep) PBS with ``count`` nodes; returns the jobs' MPI prologue."""
    ensure_built()
    made = nodes.create_nodes(count if count > 1 else 0, record, name_head=True)
    if count > 1:
        say(f"simulated nodes: {', '.join(made.namespaces) or 'already there'} on "
            f"{nodes.BRIDGE} ({nodes.SUBNET}.0/24)")
    if CONF.exists() and configured_nodes() is None:
        say(f"{CONF} exists and is not ours: using it as it is")
    else:
        CONF.write_text(conf_text(count))
    (HOME / "mom_priv" / "config").write_text(mom_config())
    fresh = not head_pids()["pbs_server"]
    if fresh:
        say("starting PBS (server, scheduler, comm" + (", mom)" if count == 1 else ")"))
        result = _init("start")
        if not server_up():
            time.sleep(2)
        if not server_up():
            if "Stopping PBS dataservice" in _server_log_tail() or not head_pids()["pbs_server"]:
                _create_server()
            if not server_up():
                raise SystemExit(f"pbs_server did not start:\n{result.stdout}{result.stderr}")
    wait("pbs_server", server_up, timeout=90, step=0.5)
    configure_server(count)
    if fresh:
        purge_earlier_jobs()
    agent = write_rsh_agent(state)
    if count > 1:
        for i in range(1, count + 1):
            if node_mom_pid(i):
                continue
            make_node_home(i)
            say(f"starting pbs_mom on {nodes.node_name(i)}")
            subprocess.run(nodes.in_node_argv(i, [str(EXEC / "sbin" / "pbs_mom")]), check=True,
                           env={**env(), "PBS_CONF_FILE": str(node_conf(i))},
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    wait("the PBS nodes", lambda: nodes_free(count), timeout=120, step=0.5)
    say("PBS ready: " + " ".join(f"{n} free" for n in node_names(count)))
    return launcher_prologue(count, agent)


def _server_log_tail() -> str:
    logs = sorted((HOME / "server_logs").glob("*"))
    with contextlib.suppress(OSError, IndexError):
        return logs[-1].read_text(errors="replace")[-4000:]
    return ""


def purge_earlier_jobs() -> None:
    """Forget every job of an earlier run, history included (`qdel -x`). A server that
    stopped uncleanly recovers its job-id counter from the datastore behind the ids of jobs
    it also recovered, and then refuses each new job ("qsub: Job with requested ID already
    exists"); nothing of an earlier run belongs in a stack this run starts."""
    ids = qcmd(str(EXEC / "bin" / "qselect"), "-x", check=False).stdout.split()
    if ids:
        say(f"forgetting {len(ids)} PBS job(s) of an earlier run")
        qcmd(str(EXEC / "bin" / "qdel"), "-x", "-W", "force", *ids, check=False, timeout=120)


def delete_all_jobs(timeout: float = 30) -> None:
    if not server_up():
        return
    ids = qcmd(str(EXEC / "bin" / "qselect"), check=False).stdout.split()
    if not ids:
        return
    say(f"deleting PBS jobs {' '.join(ids)}")
    qcmd(str(EXEC / "bin" / "qdel"), "-W", "force", *ids, check=False)
    wait("PBS jobs to end", lambda: not qcmd(str(EXEC / "bin" / "qselect"),
                                             check=False).stdout.split(), timeout=timeout)


def _dataservice_pids() -> list[int]:
    """The PostgreSQL of PBS's datastore (its data directory is under PBS_HOME)."""
    datastore = str(HOME / "datastore")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "postgres" in cmdline and datastore in cmdline:
            found.append(proc.pid)
    return found


def stop(count: int) -> None:
    """Delete the jobs, stop the moms on the nodes and the head's daemons, by PID."""
    with contextlib.suppress(subprocess.TimeoutExpired, SystemExit):
        delete_all_jobs()
    for i in range(1, (count if count > 1 else 0) + 1):
        stop_daemon(f"pbs_mom on {nodes.node_name(i)}", node_mom_pid(i), timeout=20)
    pids = head_pids()
    if any(pids.values()) or _dataservice_pids():
        with contextlib.suppress(subprocess.TimeoutExpired):
            _init("stop")
        for name, pid in head_pids().items():
            stop_daemon(name, pid, timeout=20)
        for pid in _dataservice_pids():
            stop_daemon("PBS dataservice", pid, timeout=20)


# what PBS's daemons and client commands leave in /var/tmp: per-uid query stamps, a qsub
# daemon's socket (qsub without -f), qsub's temporary scripts, the init script's boot check
CLIENT_LEFTOVERS = (".pbs_last_query_*", "pbs_default_*", "pbsscrpt*", "pbs_boot_check")


def remove_config(count: int) -> None:
    """What `start` wrote outside PBS's own install (our pbs.conf, the nodes' homes) and
    what PBS's commands left in /var/tmp."""
    for pattern in CLIENT_LEFTOVERS:
        for path in Path("/var/tmp").glob(pattern):
            with contextlib.suppress(OSError):
                path.unlink()
    if configured_nodes() is not None:
        CONF.unlink(missing_ok=True)
    for i in range(1, 9):
        if node_conf(i).exists() and node_conf(i).read_text().startswith(MARK):
            node_conf(i).unlink()
            shutil.rmtree(node_home(i), ignore_errors=True)


def server_running() -> bool:
    return bool(head_pids()["pbs_server"])
