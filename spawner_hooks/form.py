"""Pure: the HTML of the options form, filled with the admin's limits and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from .options import LABELS, Limits, format_bytes


def render(limits: Limits, previous: Mapping[str, list[str]] | None = None) -> str:
    """The options form (Bootstrap classes, as JupyterHub's own pages use).

    ``previous`` is what the user submitted last (form data), shown again after an error so
    nothing they typed is lost; every value is HTML-escaped.
    """
    wall = limits.default_walltime
    values = {
        "cores": str(limits.default_cores),
        "threads": str(limits.default_threads),
        "worker_memory": format_bytes(limits.default_worker_memory),
        "walltime": f"{wall // 3600:02d}:{wall % 3600 // 60:02d}:00",
        "partition": limits.partitions[0],
    }
    dask_on = limits.default_dask
    if previous:
        for key in values:
            if previous.get(key):
                values[key] = str(previous[key][0])
        dask_on = bool(previous.get("dask"))
    v = {k: escape(x, quote=True) for k, x in values.items()}
    options = "".join(
        f'<option value="{escape(p)}"{" selected" if p == values["partition"] else ""}>'
        f"{escape(p)}</option>" for p in limits.partitions)
    checked = " checked" if dask_on else ""

    def field(name: str, control: str, hint: str) -> str:
        return (f'<div class="form-group mb-3"><label for="dask-mpi-lx-{name}" class="form-label">'
                f'{LABELS[name]}</label>{control}<small class="form-text text-muted">{hint}</small>'
                "</div>")

    return "\n".join([
        '<div id="dask-mpi-lx-form">',
        '<div class="form-check mb-3"><input class="form-check-input" type="checkbox" '
        f'id="dask-mpi-lx-dask" name="dask" value="on"{checked}>'
        f'<label class="form-check-label" for="dask-mpi-lx-dask">{LABELS["dask"]} in this job '
        "(shown in the Dask tab; <code>Client()</code> connects to it)</label></div>",
        field("cores", f'<input class="form-control" type="number" id="dask-mpi-lx-cores" '
              f'name="cores" min="1" max="{limits.max_cores}" value="{v["cores"]}">',
              f"With Dask: 1 for Jupyter, 1 for the scheduler, the rest are workers "
              f"(3 to {limits.max_cores})."),
        field("threads", f'<input class="form-control" type="number" id="dask-mpi-lx-threads" '
              f'name="threads" min="1" max="{limits.max_threads}" '
              f'value="{v["threads"]}">', f"1 to {limits.max_threads}."),
        field("worker_memory", f'<input class="form-control" type="text" '
              f'id="dask-mpi-lx-worker_memory" name="worker_memory" '
              f'value="{v["worker_memory"]}">',
              f"For example 2GiB; at most {format_bytes(limits.max_worker_memory)}."),
        field("walltime", f'<input class="form-control" type="text" id="dask-mpi-lx-walltime" '
              f'name="walltime" value="{v["walltime"]}">',
              f"HH:MM:SS, at most {limits.max_walltime // 3600} hours."),
        field("partition", f'<select class="form-select form-control" '
              f'id="dask-mpi-lx-partition" name="partition">{options}</select>', ""),
        "</div>",
    ])
