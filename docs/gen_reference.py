"""Write docs/reference/{cli,config,api}.md from the code: click's help, the commented defaults
YAML, and MPICluster's docstrings. Run before `mkdocs build` (make docs does)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from click.testing import CliRunner

from dask_mpi_lx import config
from dask_mpi_lx.cli import main

OUT = Path(__file__).resolve().parent / "reference"


def cli() -> str:
    parts = ["# CLI reference", "", "Generated from the click commands (`docs/gen_reference.py`).", ""]
    for args in ([], ["launch"], ["serve"], ["config"], ["env"]):
        title = " ".join(["dask-mpi-lx", *args])
        text = CliRunner().invoke(main, [*args, "--help"], prog_name="dask-mpi-lx",
                                  terminal_width=100).output
        parts += [f"## `{title}`", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(parts)


def config_keys() -> str:
    rows = ["# Configuration reference", "",
            "Every key of the `mpi-lx` dask-config namespace, with its default, from "
            "`src/dask_mpi_lx/mpi-lx.yaml`. Set one in a dask config file, in the environment "
            "(`DASK_MPI_LX__SCHEDULER_TIMEOUT=60s`, nested keys with `__`), or with the "
            "`dask-mpi-lx launch` flag of the same name. `dask-mpi-lx config` prints the "
            "resolved values.", "", "| key | default | meaning |", "|---|---|---|"]
    stack: list[tuple[int, str]] = []
    keys: list[list[str]] = []  # [path, value, comment]; a comment may go on over lines
    comment_column = -1  # where the last key's comment starts; a comment there goes on
    for line in config.DEFAULTS_FILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if keys and line.index("#") == comment_column:
                keys[-1][2] += " " + stripped.lstrip("#").strip()
            continue
        m = re.match(r"^(\s*)([\w.-]+):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        comment_column = -1
        if not m:
            continue
        indent, key, value, comment = len(m.group(1)), m.group(2), m.group(3), m.group(4) or ""
        stack = [(i, k) for i, k in stack if i < indent]
        path = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        if value == "" and not comment:
            continue
        keys.append([path, value or "(mapping)", comment])
        comment_column = line.index("#") if comment else -1
    rows += [f"| `{path}` | `{value}` | {comment} |" for path, value, comment in keys]
    return "\n".join(rows) + "\n"


def api() -> str:
    from dask_mpi_lx.cluster.mpicluster import MPICluster

    parts = ["# MPICluster API", "", "Generated from the docstrings.", "",
             f"## `MPICluster{inspect.signature(MPICluster.__init__)}`".replace("(self, ", "("),
             "", "```text", inspect.cleandoc(MPICluster.__doc__), "```", ""]
    for name in ("scale", "adapt", "scale_down", "close", "dashboard_link", "worker_ranks",
                 "limit", "from_name", "get_logs", "wait_for_workers"):
        member = inspect.getattr_static(MPICluster, name)
        doc = inspect.getdoc(getattr(MPICluster, name)) or ""
        kind = "property" if isinstance(member, property) else "method"
        parts += [f"### `{name}` ({kind})", "", doc or "(inherited from distributed's Cluster)", ""]
    from dask_mpi_lx.jobs.cluster import MPIJobCluster

    parts += ["# MPIJobCluster API", "",
              f"## `MPIJobCluster{inspect.signature(MPIJobCluster.__init__)}`".replace("(self, ", "("),
              "", "```text", inspect.cleandoc(MPIJobCluster.__doc__), "```", ""]
    for name in ("scale", "adapt", "jobs", "capacity", "title", "close"):
        member = inspect.getattr_static(MPIJobCluster, name)
        doc = inspect.getdoc(getattr(MPIJobCluster, name)) or ""
        kind = "property" if isinstance(member, property) else "method"
        parts += [f"### `{name}` ({kind})", "", doc or "(as MPICluster's)", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    (OUT / "cli.md").write_text(cli())
    (OUT / "config.md").write_text(config_keys())
    (OUT / "api.md").write_text(api())
    print("wrote", ", ".join(p.name for p in sorted(OUT.glob("*.md"))))
