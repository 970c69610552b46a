"""Pure: the user's Dask choices, parsed from the form or REST and bounded by admin limits.

No value reaches a batch script unparsed: every field is converted to an int, a bool, a
duration or a name from the admin's list, or refused with a message saying what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

FIELDS = ("dask", "cores", "nodes", "threads", "worker_memory", "walltime", "partition", "account",
          "job_priority")
LABELS = {
    "dask": "Start a Dask cluster",
    "cores": "Cores (MPI ranks)",
    "nodes": "Nodes",
    "threads": "Threads per worker",
    "worker_memory": "Memory per worker",
    "walltime": "Walltime",
    "partition": "Queue / partition",
    "account": "Project / account",
    "job_priority": "Job priority",
}
MIN_DASK_CORES = 3  # notebook + scheduler + one worker
MIN_RANKS_PER_NODE = 2  # with several nodes: rank 0 (Jupyter) and rank 1 (scheduler) share node 1
MAX_TEXT = 64  # longest value any field accepts (characters)
#: A project/account code the admin (or the admin's hook) may offer: it goes into ``#PBS -A``
#: or ``#SBATCH --account=`` as it is, so nothing that could end the line or the word
ACCOUNT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6,
          "mib": 2**20, "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12,
          "tib": 2**40}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_WALLTIME_RE = re.compile(r"^\s*(?:(\d{1,3}):)?(\d{1,2}):(\d{2})\s*$")


class OptionError(ValueError):
    """A user option was refused; the message is safe and useful to show on the spawn page."""


@dataclass(frozen=True)
class Limits:
    """What the admin allows (set through the spawner's traitlets)."""

    max_cores: int = 8
    max_nodes: int = 1
    max_threads: int = 4
    max_worker_memory: int = 8 * 2**30
    max_walltime: int = 12 * 3600
    partitions: tuple[str, ...] = ("debug",)
    default_cores: int = 6
    default_threads: int = 1
    default_worker_memory: int = 2 * 2**30
    default_walltime: int = 3600
    default_dask: bool = True
    cores_per_node: Mapping[str, int] = field(default_factory=dict)  # partition -> CPU cores
    accounts: tuple[str, ...] = ()  # project codes the user may charge; empty: no such field
    queue_walltime: Mapping[str, int] = field(default_factory=dict)  # partition -> seconds
    queue_nodes: Mapping[str, int] = field(default_factory=dict)  # partition -> most nodes
    memory_per_node: Mapping[str, int] = field(default_factory=dict)  # partition -> bytes
    notebook_memory: int = 2 * 2**30  # what the job asks on node 1 beside its workers
    job_priorities: tuple[str, ...] = ()  # PBS job_priority values; empty: no such field

    def walltime_of(self, partition: str) -> int:
        """The longest walltime ``partition`` allows (its own limit, else ``max_walltime``)."""
        return self.queue_walltime.get(partition, self.max_walltime)

    def nodes_of(self, partition: str) -> int:
        """The most nodes ``partition`` allows (its own limit, else ``max_nodes``)."""
        return self.queue_nodes.get(partition, self.max_nodes)

    @property
    def longest_walltime(self) -> int:
        """The longest walltime of any offered partition: what the form's field allows."""
        return max(self.walltime_of(p) for p in self.partitions)

    @property
    def most_nodes(self) -> int:
        """The most nodes of any offered partition: what the form's field allows."""
        return max(self.nodes_of(p) for p in self.partitions)


@dataclass(frozen=True)
class DaskOptions:
    """Validated choices; `as_user_options` is what the hub stores."""

    dask: bool
    cores: int
    threads: int
    worker_memory: int   # bytes
    walltime: int        # seconds
    partition: str
    nodes: int = 1
    account: str = ""    # "" where the hub offers no project field
    job_priority: str = ""  # "" where the hub offers no priority field

    @property
    def workers(self) -> int:
        return self.cores - 2 if self.dask else 0

    @property
    def ranks(self) -> int:
        """MPI ranks of the job: ``cores`` with Dask, else 1 (Jupyter alone)."""
        return self.cores if self.dask else 1

    @property
    def ranks_per_node(self) -> int:
        """Ranks on each node (``validate`` makes them divide evenly)."""
        return self.ranks // self.nodes

    def memory_per_node(self, notebook: int) -> int:
        """Bytes the busiest node needs: node 1 holds rank 0 (``notebook`` covers Jupyter, the
        kernels and the scheduler on rank 1) and the rest of its ranks' workers; every other
        node holds ``ranks_per_node`` workers."""
        first = notebook + self.worker_memory * max(self.ranks_per_node - 2, 0)
        others = self.worker_memory * self.ranks_per_node if self.nodes > 1 else 0
        return max(first, others)

    @property
    def walltime_hms(self) -> str:
        return format_walltime(self.walltime)

    def as_user_options(self) -> dict[str, Any]:
        out = asdict(self)
        out["walltime"] = self.walltime_hms
        for name in ("account", "job_priority"):
            if not out[name]:
                del out[name]  # no such field: the options stay as they were before it
        return out


def format_bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


def format_size(n: int) -> str:
    """Bytes for a message: whole GiB or TiB where they divide, else GiB to one decimal."""
    return format_bytes(n) if n % 2**30 == 0 else f"{n / 2**30:.1f}GiB"


def format_walltime(seconds: int) -> str:
    """Seconds as HH:MM:SS (hours may pass 99)."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _short(text: str, keep: int = 16) -> str:
    """At most ``keep`` characters of untrusted text, quoted, for a message or a log."""
    return repr(text[:keep]) + ("..." if len(text) > keep else "")


def _text(name: str, value: Any) -> str:
    """One plain value as stripped text, at most MAX_TEXT characters."""
    if isinstance(value, (list, tuple)):  # form data arrives as lists of strings
        if len(value) != 1:
            raise OptionError(f"{LABELS[name]}: expected one value, got {len(value)}")
        value = value[0]
    if not isinstance(value, (str, int, float, bool)):
        raise OptionError(f"{LABELS[name]}: expected a plain value, got {type(value).__name__}")
    if isinstance(value, int) and value.bit_length() > 4 * MAX_TEXT:  # str() of it would be long
        raise OptionError(f"{LABELS[name]}: too long (at most {MAX_TEXT} characters)")
    text = str(value)
    if len(text) > MAX_TEXT:
        raise OptionError(f"{LABELS[name]}: too long ({len(text)} characters, at most {MAX_TEXT}): "
                          f"{_short(text)}")
    return text.strip()


def _whole(name: str, value: Any, low: int, high: int, whose: str = "") -> int:
    """A whole number from ``low`` to ``high``; ``whose`` says whose limit ``high`` is."""
    text = _text(name, value)
    if isinstance(value, bool) or not re.fullmatch(r"\d{1,9}", text):
        raise OptionError(f"{LABELS[name]}: got {text!r}; expected a whole number from {low} to "
                          f"{high}{whose}")
    number = int(text)
    if not low <= number <= high:
        raise OptionError(f"{LABELS[name]}: got {number}; expected a whole number from {low} to "
                          f"{high}{whose}")
    return number


def parse_memory(name: str, value: Any, high: int) -> int:
    text = _text(name, value)
    match = _MEMORY_RE.match(text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise OptionError(f"{LABELS[name]}: got {text!r}; expected a size like 4GiB or 512MiB "
                          f"(at most {format_bytes(high)})")
    number = int(Decimal(match.group(1)) * _UNITS[unit])  # exact: no float overflow
    if not 2**20 * 256 <= number <= high:
        raise OptionError(f"{LABELS[name]}: got {text!r}; expected 256MiB to {format_bytes(high)}")
    return number


def parse_walltime(name: str, value: Any, high: int, whose: str = "") -> int:
    """Seconds from HH:MM:SS or MM:SS, 1 minute to ``high`` (``whose`` limit, for the message)."""
    text = _text(name, value)
    match = _WALLTIME_RE.match(text)
    if not match:
        raise OptionError(f"{LABELS[name]}: got {text!r}; expected HH:MM:SS or MM:SS")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    if minutes > 59 or seconds > 59:
        raise OptionError(f"{LABELS[name]}: got {text!r}; minutes and seconds go up to 59")
    total = hours * 3600 + minutes * 60 + seconds
    if not 60 <= total <= high:
        raise OptionError(f"{LABELS[name]}: got {text!r}; expected 00:01:00 to "
                          f"{format_walltime(high)}{whose}")
    return total


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(name, value).lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no", ""):
        return False
    raise OptionError(f"{LABELS[name]}: got {text!r}; expected on or off")


def check_accounts(codes: Any, source: str) -> tuple[str, ...]:
    """The admin's (or the admin hook's) project codes, or a ValueError naming the bad one."""
    if not isinstance(codes, (list, tuple)):
        raise ValueError(f"{source}: expected a list of project codes, got {type(codes).__name__}")
    for code in codes:
        if not isinstance(code, str) or not ACCOUNT_RE.fullmatch(code):
            shown = _short(code) if isinstance(code, str) else type(code).__name__
            raise ValueError(f"{source}: {shown} is not a project code (letters, digits and "
                             f"_.@+-, at most {MAX_TEXT} characters)")
    return tuple(dict.fromkeys(codes))  # in order, each once


def _choice(raw: Mapping[str, Any], name: str, choices: tuple[str, ...], what: str) -> str:
    """Field ``name``: one of ``choices`` (the first by default), or "" where the hub offers
    none; ``what`` names the choice in a refusal ("project")."""
    label = LABELS[name]
    if name not in raw:
        return choices[0] if choices else ""
    value = _text(name, raw[name])
    if not choices:
        if value:
            raise OptionError(f"{label}: got {_short(value)}; this hub offers no {what} choice")
        return ""
    if value not in choices:
        shown = ", ".join(choices[:8]) + (", ..." if len(choices) > 8 else "")
        raise OptionError(f"{label}: got {_short(value)}; choose one of {shown}")
    return value


def _account(raw: Mapping[str, Any], limits: Limits) -> str:
    """The project code: one of ``limits.accounts`` (the first by default), or "" if none."""
    return _choice(raw, "account", limits.accounts, "project")


def _priority(raw: Mapping[str, Any], limits: Limits) -> str:
    """The PBS job priority: one of ``limits.job_priorities`` (the first by default), or ""."""
    return _choice(raw, "job_priority", limits.job_priorities, "priority")


def _check_keys(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise OptionError(f"user options must be an object with keys {', '.join(FIELDS)}")
    unknown = sorted(str(k) for k in set(raw) - set(FIELDS))
    if unknown:
        shown = ", ".join(_short(k, 24) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise OptionError(f"unknown option(s) {shown}; allowed: {', '.join(FIELDS)}")
    return dict(raw)


def check_shape(opts: DaskOptions, limits: Limits) -> None:
    """The ranks fit the nodes: evenly spread, 2+ per node on several nodes, and at most the
    partition's cores per node (ranks per node x threads)."""
    cores, nodes = LABELS["cores"], opts.nodes
    if nodes > 1 and not opts.dask:
        raise OptionError(f"{LABELS['nodes']}: got {nodes}; without a Dask cluster the job runs "
                          "on 1 node")
    if opts.ranks % nodes:
        raise OptionError(f"{cores}: {opts.ranks} cannot be spread evenly over {nodes} nodes; "
                          f"use a multiple of {nodes}")
    if nodes > 1 and opts.ranks_per_node < MIN_RANKS_PER_NODE:
        raise OptionError(f"{cores}: {opts.ranks} over {nodes} nodes is {opts.ranks_per_node} per "
                          f"node; on several nodes each needs at least {MIN_RANKS_PER_NODE} "
                          f"(use {MIN_RANKS_PER_NODE * nodes} or more)")
    cap = limits.cores_per_node.get(opts.partition)
    need = opts.ranks_per_node * opts.threads
    if cap and need > cap:
        more = "; ask for more nodes" if nodes < limits.nodes_of(opts.partition) else ""
        raise OptionError(f"{cores}: {opts.ranks_per_node} per node x {opts.threads} thread(s) "
                          f"is {need} cores per node; queue {opts.partition!r} allows at most "
                          f"{cap} cores per node{more}")


def _queue_note(queue: str, own: Mapping[str, Any]) -> str:
    """", the most queue 'q' allows" where ``queue`` has its own limit in ``own``, else ""."""
    return f", the most queue {queue!r} allows" if queue in own else ""


def check_memory(opts: DaskOptions, limits: Limits) -> None:
    """The job's memory per node fits its queue's nodes (where the admin gave their memory)."""
    cap = limits.memory_per_node.get(opts.partition)
    need = opts.memory_per_node(limits.notebook_memory)
    if cap and need > cap:
        raise OptionError(f"{LABELS['worker_memory']}: {opts.ranks_per_node} rank(s) per node "
                          f"need {format_size(need)} per node; queue {opts.partition!r} allows "
                          f"at most {format_size(cap)} per node")


def validate(raw: Mapping[str, Any] | None, limits: Limits) -> DaskOptions:
    """Turn untrusted options (form or REST) into `DaskOptions`, or raise `OptionError`."""
    raw = _check_keys(raw if raw is not None else {})
    dask = _bool("dask", raw["dask"]) if "dask" in raw else limits.default_dask
    low = MIN_DASK_CORES if dask else 1
    cores = (_whole("cores", raw["cores"], low, limits.max_cores) if "cores" in raw
             else max(low, limits.default_cores))
    partition = _text("partition", raw["partition"]) if "partition" in raw else limits.partitions[0]
    if partition not in limits.partitions:
        raise OptionError(f"{LABELS['partition']}: got {partition!r}; choose one of "
                          f"{', '.join(limits.partitions)}")
    nodes = (_whole("nodes", raw["nodes"], 1, limits.nodes_of(partition),
                    _queue_note(partition, limits.queue_nodes)) if "nodes" in raw else 1)
    threads = (_whole("threads", raw["threads"], 1, limits.max_threads) if "threads" in raw
               else limits.default_threads)
    memory = (parse_memory("worker_memory", raw["worker_memory"], limits.max_worker_memory)
              if "worker_memory" in raw else limits.default_worker_memory)
    walltime = (parse_walltime("walltime", raw["walltime"], limits.walltime_of(partition),
                               _queue_note(partition, limits.queue_walltime))
                if "walltime" in raw else min(limits.default_walltime,
                                              limits.walltime_of(partition)))
    opts = DaskOptions(dask=dask, cores=cores, threads=threads, worker_memory=memory,
                       walltime=walltime, partition=partition, nodes=nodes,
                       account=_account(raw, limits), job_priority=_priority(raw, limits))
    check_shape(opts, limits)
    check_memory(opts, limits)
    return opts


def from_form(formdata: Mapping[str, list[str]], limits: Limits) -> DaskOptions:
    """Form posts carry lists of strings; an unchecked checkbox is simply absent."""
    data = {k: v for k, v in formdata.items() if k != "_xsrf"}
    data["dask"] = data.get("dask", ["off"])
    return validate(data, limits)
