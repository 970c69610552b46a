"""Pure: the HTML of the options form, filled with the admin's limits and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from .options import LABELS, Limits, format_bytes, format_size, format_walltime


def _field(name: str, control: str, hint: str) -> str:
    return (f'<div class="form-group mb-3"><label for="dask-mpi-lx-{name}" class="form-label">'
            f'{LABELS[name]}</label>{control}<small class="form-text text-muted">{hint}</small>'
            "</div>")


def _number(name: str, high: int, value: str) -> str:
    return (f'<input class="form-control" type="number" id="dask-mpi-lx-{name}" name="{name}" '
            f'min="1" max="{high}" value="{value}">')


def _text(name: str, value: str) -> str:
    return (f'<input class="form-control" type="text" id="dask-mpi-lx-{name}" name="{name}" '
            f'value="{value}">')


def _values(limits: Limits, previous: Mapping[str, list[str]] | None) -> tuple[dict[str, str], bool]:
    """The fields' values (HTML-escaped) and whether the Dask box is checked."""
    wall = limits.default_walltime
    values = {
        "cores": str(limits.default_cores),
        "nodes": "1",
        "threads": str(limits.default_threads),
        "worker_memory": format_bytes(limits.default_worker_memory),
        "walltime": f"{wall // 3600:02d}:{wall % 3600 // 60:02d}:00",
        "partition": limits.partitions[0],
        "account": limits.accounts[0] if limits.accounts else "",
        "job_priority": limits.job_priorities[0] if limits.job_priorities else "",
    }
    dask_on = limits.default_dask
    if previous:
        for key in values:
            if previous.get(key):
                values[key] = str(previous[key][0])
        dask_on = bool(previous.get("dask"))
    return {k: escape(x, quote=True) for k, x in values.items()}, dask_on


def _nodes_hint(limits: Limits) -> str:
    return (f"1 to {limits.most_nodes}, at most the queue's own limit (beside its name). The "
            "cores are spread evenly: a multiple of the nodes, at least 2 per node.")


def _nodes(limits: Limits, value: str) -> list[str]:
    """The Nodes field, only where some offered queue allows more than one node."""
    if limits.most_nodes <= 1:
        return []
    return [_field("nodes", _number("nodes", limits.most_nodes, value), _nodes_hint(limits))]


def queue_label(limits: Limits, queue: str) -> str:
    """A queue's name with its limits, as the drop-down shows it (not HTML-escaped)."""
    nodes = limits.nodes_of(queue)
    parts = [f"at most {format_walltime(limits.walltime_of(queue))}",
             f"{nodes} node{'s' if nodes > 1 else ''}"]
    per_node = [f"{limits.cores_per_node[queue]} cores"] if queue in limits.cores_per_node else []
    if queue in limits.memory_per_node:
        per_node.append(format_size(limits.memory_per_node[queue]))
    if per_node:
        parts.append(" and ".join(per_node) + " per node")
    return f"{queue} ({', '.join(parts)})"


def _select(name: str, choices: tuple[str, ...], chosen: str,
            labels: Mapping[str, str] | None = None) -> str:
    """A drop-down of the admin's names (shown as ``labels`` where given); ``chosen`` is
    HTML-escaped already."""
    labels = labels or {}
    options = "".join(
        f'<option value="{escape(c, quote=True)}"'
        f'{" selected" if escape(c, quote=True) == chosen else ""}>'
        f"{escape(labels.get(c, c))}</option>"
        for c in choices)
    return (f'<select class="form-select form-control" id="dask-mpi-lx-{name}" name="{name}">'
            f"{options}</select>")


def _account(limits: Limits, value: str) -> list[str]:
    """The project field, only where the admin (or the admin's hook) offers project codes."""
    if not limits.accounts:
        return []
    return [_field("account", _select("account", limits.accounts, value),
                   "The project (allocation) this job is charged to.")]


def _priority(limits: Limits, value: str) -> list[str]:
    """The job priority field, only where the admin offers priorities (PBS job_priority)."""
    if not limits.job_priorities:
        return []
    return [_field("job_priority", _select("job_priority", limits.job_priorities, value),
                   "The job's priority; the site charges higher priorities at a higher rate.")]


def render(limits: Limits, previous: Mapping[str, list[str]] | None = None) -> str:
    """The options form (Bootstrap classes, as JupyterHub's own pages use).

    ``previous`` is what the user submitted last (form data), shown again after an error so
    nothing they typed is lost; every value is HTML-escaped.
    """
    v, dask_on = _values(limits, previous)
    checked = " checked" if dask_on else ""
    in_all = " in all, over every node" if limits.max_nodes > 1 else ""
    return "\n".join([
        '<div id="dask-mpi-lx-form">',
        '<div class="form-check mb-3"><input class="form-check-input" type="checkbox" '
        f'id="dask-mpi-lx-dask" name="dask" value="on"{checked}>'
        f'<label class="form-check-label" for="dask-mpi-lx-dask">{LABELS["dask"]} in this job '
        "(shown in the Dask tab; <code>Client()</code> connects to it)</label></div>",
        _field("cores", _number("cores", limits.max_cores, v["cores"]),
               f"With Dask: 1 for Jupyter, 1 for the scheduler, the rest are workers "
               f"(3 to {limits.max_cores}{in_all})."),
        *_nodes(limits, v["nodes"]),
        _field("threads", _number("threads", limits.max_threads, v["threads"]),
               f"1 to {limits.max_threads}."),
        _field("worker_memory", _text("worker_memory", v["worker_memory"]),
               f"For example 2GiB; at most {format_bytes(limits.max_worker_memory)}."),
        _field("walltime", _text("walltime", v["walltime"]),
               f"HH:MM:SS, at most {format_walltime(limits.longest_walltime)} and at most the "
               "queue's own limit (beside its name)."),
        _field("partition", _select("partition", limits.partitions, v["partition"],
                                    {q: queue_label(limits, q) for q in limits.partitions}),
               "Each queue's limits are shown beside its name; the hub refuses a request above "
               "them."),
        *_account(limits, v["account"]),
        *_priority(limits, v["job_priority"]),
        "</div>",
    ])
