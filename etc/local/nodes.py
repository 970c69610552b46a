"""Simulated compute nodes for the local stack: each node is a network namespace (its own
address on a bridge) plus a UTS namespace (its own hostname), where its own slurmd runs.

The file system, the kernel and the PID space stay shared, as home directories are on a
real cluster. Everything made here is written to a record file first and removed from it
by `remove_nodes`, so a `down` removes what an `up` made and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The one place that names the simulated network: a /24 on a bridge of our own. Tests send
# traffic only to loopback and to these addresses.
SUBNET = os.environ.get("DASK_MPI_LX_SUBNET", "10.77.0")
BRIDGE = "dmlx-br0"
PREFIX = "dmlx-"
HOSTS_FILE = Path("/etc/hosts")
HOSTS_MARK = "# dask-mpi-lx simulated node"


def bridge_ip() -> str:
    """This host's address on the bridge: slurmctld and the hub as the nodes reach them."""
    return f"{SUBNET}.1"


def node_name(i: int) -> str:
    return f"n{i}"


def node_ip(i: int) -> str:
    return f"{SUBNET}.{10 + i}"


def netns(i: int) -> str:
    return f"{PREFIX}n{i}"


@dataclass
class Made:
    """What `create_nodes` made (so that `remove_nodes` touches nothing else)."""

    nodes: int = 0
    bridge: bool = False
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    hosts_lines: list[str] = field(default_factory=list)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode:
        raise SystemExit(f"failed: ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _load(record: Path) -> Made:
    try:
        return Made(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return Made()


def _save(record: Path, made: Made) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(asdict(made)))


def _add_hosts_lines(lines: list[str]) -> None:
    text = HOSTS_FILE.read_text()
    missing = [ln for ln in lines if ln not in text.splitlines()]
    if missing:
        HOSTS_FILE.write_text(text + ("" if text.endswith("\n") else "\n") + "\n".join(missing) + "\n")


def _remove_hosts_lines(lines: list[str]) -> None:
    with contextlib.suppress(OSError):
        kept = [ln for ln in HOSTS_FILE.read_text().splitlines() if ln not in lines]
        HOSTS_FILE.write_text("\n".join(kept) + "\n")


def marked_node_count(conf: Path, mark: str) -> int | None:
    """The node count a config file of the stack's records on its first line
    ("<mark> nodes=K"); None when the file is missing or not the stack's."""
    try:
        first = conf.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    if not first.startswith(mark):
        return None
    _, _, count = first.partition("nodes=")
    return int(count) if count.isdigit() else 1


def head_name() -> str:
    """This host's name on the bridge (PBS needs a server name that is not loopback)."""
    return f"{PREFIX}head"


def create_nodes(count: int, record: Path, name_head: bool = False) -> Made:
    """Make the bridge and ``count`` node namespaces n1..nK (0: the bridge alone), and name
    them in /etc/hosts; with ``name_head`` also this host's bridge address (`head_name`)."""
    made = _load(record)
    if _ip("link", "show", BRIDGE, check=False).returncode:
        made.bridge = True
        _save(record, made)
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{bridge_ip()}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for i in range(1, count + 1):
        ns, host_end, node_end = netns(i), f"{PREFIX}h{i}", f"{PREFIX}v{i}"
        if not Path(f"/run/netns/{ns}").exists():
            made.namespaces.append(ns)
            made.links.append(host_end)
            _save(record, made)
            _ip("netns", "add", ns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
            _ip("link", "set", host_end, "master", BRIDGE)
            _ip("link", "set", host_end, "up")
            _ip("link", "set", node_end, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{node_ip(i)}/24", "dev", node_end)
            _ip("-n", ns, "link", "set", node_end, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    lines = [f"{node_ip(i)} {node_name(i)} {HOSTS_MARK}" for i in range(1, count + 1)]
    if name_head:
        lines.append(f"{bridge_ip()} {head_name()} {HOSTS_MARK}")
    made.hosts_lines = sorted(set(made.hosts_lines) | set(lines))
    made.nodes = max(made.nodes, count)
    _save(record, made)
    _add_hosts_lines(lines)
    return made


def in_node_argv(i: int, argv: list[str]) -> list[str]:
    """``argv`` run inside node i: its network namespace and a UTS namespace named n<i>.
    Only the network namespace is entered (`ip netns exec` would mount a /sys without
    cgroups, where slurmd does not start)."""
    return ["nsenter", f"--net=/run/netns/{netns(i)}", "unshare", "--uts", "sh", "-c",
            f'hostname {node_name(i)} && exec "$@"', "sh", *argv]


def namespace_pids(ns: str) -> list[int]:
    out = _ip("netns", "pids", ns, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def kill_namespace(ns: str, timeout: float = 10, crash: bool = False) -> None:
    """SIGTERM, then SIGKILL, every process in a node's network namespace; with ``crash``
    SIGKILL at once, as when a node fails (nothing on it gets to say goodbye)."""
    for sig in (signal.SIGKILL,) if crash else (signal.SIGTERM, signal.SIGKILL):
        for pid in namespace_pids(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5)
        while namespace_pids(ns) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not namespace_pids(ns):
            return


def remove_nodes(record: Path) -> None:
    """Remove exactly what `create_nodes` recorded; stop what still runs in the nodes."""
    made = _load(record)
    for ns in made.namespaces:
        if Path(f"/run/netns/{ns}").exists():
            kill_namespace(ns)
            _ip("netns", "del", ns, check=False)
    for link in made.links:
        _ip("link", "del", link, check=False)
    if made.bridge:
        _ip("link", "del", BRIDGE, check=False)
    _remove_hosts_lines(made.hosts_lines)
    record.unlink(missing_ok=True)
