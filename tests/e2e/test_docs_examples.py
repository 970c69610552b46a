"""Every fenced example in README.md, docs/user-guide.md and docs/admin-guide.md is run.

The ```python, ```bash and ```yaml blocks of those files are parsed, and each must be in
`REGISTRY` (keyed by its file and a short hash of its text, with its first line for the
reader): a new or changed example fails `test_registry_covers_every_block` until someone
says how it runs. ```text blocks and unlabelled ones (a layout tree, rendered script
excerpts) are not code; the hub-config runner compares the rendered scripts with the
```text block that follows a config block where the entry says so.

How an example runs (one test per runner, parametrized over its blocks):

* ``kernel``: in a fresh kernel of alice's server, spawned through the hub on the real stack
  (one module-scoped server). Each top-level statement of the block is a cell of its own, run
  verbatim and in order (the cells joined are the block's text); a bare ``cluster`` line
  therefore shows its repr, as in a notebook. Between statements, *probe* cells named in the
  entry record facts (prints ``JSON {...}``); they never change what the block does, except
  where the entry says so. A harness cell first gives the job's cluster all its workers back
  (the examples park some), so each example starts from the same cluster. With
  ``subprocess=True`` the block (with its epilogue) runs as a script in a subprocess of the
  kernel whose environment lacks DASK_CONFIG and DASK_SCHEDULER_ADDRESS: a process that did
  not inherit Jupyter's environment, inside the job.
* ``mpirun``: a batch-script block written to a file and run with ``mpirun -np N python
  script.py`` (tests/mpirun.py), the placeholder ``...`` replaced where the entry says so.
* ``shell``: a bash block, run with ``bash -c`` on this host (as root: Open MPI is allowed
  to run as root and oversubscribe through its environment variables, the command is not
  edited), or with ``in_job=True`` from a kernel of alice's job, in a subprocess whose
  environment lacks DASK_CONFIG and DASK_SCHEDULER_ADDRESS.
* ``hub-config``: exec'd as jupyterhub_config.py (``c`` and ``get_config`` provided) into a
  traitlets Config; every setting must be a real trait, and the spawner class it names (or
  configures) renders batch scripts for the entry's user options (no hub needed).
* ``yaml``: parsed; a dask-labextension factory must import, ``mpi-lx`` keys must exist in
  src/dask_mpi_lx/mpi-lx.yaml.
* ``not-run``: with the reason.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.hub import Hub, execute_request, spawned_server

DOC_FILES = ("README.md", "docs/user-guide.md", "docs/admin-guide.md")
RUN_LANGS = ("python", "bash", "yaml")
NOT_CODE_LANGS = ("text", "")  # layout trees and rendered-script excerpts
VENV_BIN = Path(sys.executable).parent

USER = "alice"
# 5 cores: Jupyter, the scheduler, 3 workers. The bursting example asks for 4 workers past the
# allocation; a burst job has the job's ranks, all but one of them workers, so 4 cores would
# need two burst jobs and the local hub allows one (dask_burst_max_jobs = 1).
OPTIONS = {"cores": 5, "threads": 1, "worker_memory": "1GiB", "walltime": "00:30:00"}
LIMIT = OPTIONS["cores"] - 2


# --------------------------------------------------------------------------- the blocks

@dataclass(frozen=True)
class Block:
    file: str
    line: int  # of the opening fence
    lang: str
    text: str

    @property
    def first(self) -> str:
        return next((x.strip() for x in self.text.splitlines() if x.strip()), "")

    @property
    def key(self) -> str:
        return f"{self.file}#{hashlib.sha256(self.text.encode()).hexdigest()[:8]}"


FENCE = re.compile(r"^```([^\s`]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def parse(file: str) -> list[Block]:
    text = (ROOT / file).read_text()
    return [Block(file, text.count("\n", 0, m.start()) + 1, m.group(1).lower(), m.group(2))
            for m in FENCE.finditer(text)]


def all_blocks() -> list[Block]:
    return [b for f in DOC_FILES for b in parse(f)]


def code_blocks() -> list[Block]:
    return [b for b in all_blocks() if b.lang not in NOT_CODE_LANGS]


def text_block_after(block: Block) -> Block:
    """The ```text block that follows ``block`` in its file (a rendered-script excerpt)."""
    later = [b for b in parse(block.file) if b.line > block.line]
    assert later and later[0].lang == "text", f"{block.key}: no ```text block follows it"
    return later[0]


# --------------------------------------------------------------------------- the registry

@dataclass
class Render:
    """One batch script a hub-config example renders: ``options`` as the user sent them;
    ``lines`` must be whole lines of the script, ``prefixes`` must start lines; ``excerpt``
    names the section (its first line, "" for all) of the ```text block after the config
    block, whose lines are expected too (trailing "  # ..." comments dropped, "..." at the
    end of a line: a prefix)."""
    options: dict
    lines: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    excerpt: str | None = None


@dataclass
class Example:
    runner: str  # kernel, mpirun, shell, hub-config, yaml, not-run
    first: str  # the block's first non-empty line, checked: the reader's handle on the key
    why: str = ""  # not-run: the reason; else what the harness adds or replaces, if anything
    # kernel
    probes: tuple[tuple[str, str], ...] = ()  # (a statement's first line, cell run after it)
    epilogue: str = ""
    subprocess: bool = False
    # mpirun, shell
    np: int = 0
    replace: tuple[tuple[str, str], ...] = ()
    expect: tuple[str, ...] = ()  # regexes the output must match ({address}: the job's)
    in_job: bool = False
    # hub-config
    spawner: str = ""  # for fragments that name no spawner_class
    base: dict = field(default_factory=dict)  # settings a fragment assumes, by trait
    renders: tuple[Render, ...] = ()
    # every runner: more checks on what was computed
    check: Callable | None = None
    timeout: float = 120


def j(expr: str) -> str:
    """A probe cell that prints ``JSON`` and the dict ``expr``."""
    return f"import json as _json\nprint('JSON ' + _json.dumps({expr}))"


WORKER_NAMES = "sorted(str(w['name']) for w in cluster.scheduler_info['workers'].values())"
BURST_JOBS = ("[_l.split(' ', 1)[1] for _l in __import__('subprocess').run(['squeue', '-h', "
              "'--me', '-o', '%j %i %T'], capture_output=True, text=True).stdout.splitlines() "
              "if _l.startswith('dmlx-burst-' + __import__('os').environ['SLURM_JOB_ID'] + '-')]")


def client_facts(name: str = "client") -> str:
    return (f"{name}.wait_for_workers({LIMIT}, timeout=60)\n"  # the workers join after Jupyter
            + j(f"{{'address': {name}.scheduler.address, "
                "'env_address': __import__('os').environ['DASK_SCHEDULER_ADDRESS'], "
                f"'workers': len({name}.scheduler_info()['workers']), "
                f"'sum': {name}.submit(sum, [1, 2]).result(), "
                "'encryption': __import__('dask').config.get("
                "'distributed.comm.require-encryption')}"))


def displayed(cells: list[dict], expression: str) -> dict:
    """The cell that is ``expression`` alone (and a comment): what the notebook shows."""
    (cell,) = [c for c in cells if c["code"].split("#")[0].strip() == expression]
    return cell


def check_client(facts: dict, cells: list[dict]) -> None:
    assert facts["address"] == facts["env_address"] and facts["address"].startswith("tls://")
    assert facts["workers"] == LIMIT and facts["sum"] == 3 and facts["encryption"] is True


def check_readme_use(facts: dict, cells: list[dict]) -> None:
    check_client(facts, cells)
    assert facts["limit"] == LIMIT and facts["mode"] == "attach", facts
    assert facts["after_scale"] == 2, facts  # scale returns once the ranks have settled
    assert facts["adaptive"], facts
    assert facts["status"] == "closed" and facts["after_close_sum"] == 5, facts  # detach only


def check_user_guide_mpicluster(facts: dict, cells: list[dict]) -> None:
    shown = displayed(cells, "cluster")
    assert shown["result"].startswith("MPICluster("), shown
    assert f"active_ranks={LIMIT}, parked_ranks=0" in shown["result"], shown
    for what in ("Job", "Hosts", "Worker ranks", f"{LIMIT} active, 0 parked",
                 "/proxy/dask-mpi-lx/dashboard/status"):
        assert what in shown["html"], (what, shown["html"])
    assert "active_ranks=2, parked_ranks=1" in facts["after_scale"], facts
    assert facts["adaptive"] and facts["status"] == "closed", facts


def check_job_cluster(facts: dict, cells: list[dict]) -> None:
    first = [i for i, s in facts["jobs_at_start"].items() if s["first"]]
    assert len(first) == 1 and facts["jobs_at_start"][first[0]]["state"] == "running", facts
    assert facts["workers"] == 6, facts  # 8 cores: keeper, scheduler, 6 workers
    jobs = facts["jobs_after_scale"]
    assert len(jobs) == 3, jobs  # the first job and 2 more
    # 6 workers in the first job (8 ranks), 2 more jobs of 7 (8 ranks, all but rank 0)
    assert facts["cores"] == [8, 8, 8], facts
    if all(s["state"] == "pending" for s in jobs.values() if not s["first"]):
        assert facts["planned"] == 20, facts  # the first job's 6 and the pending jobs' 14
    shown = displayed(cells, "cluster")
    assert shown["result"].startswith("MPIJobCluster("), shown
    for job in jobs:
        assert job in shown["html"], (job, shown["html"])
    assert facts["left_after_close"] == [], facts  # close() cancelled every job


def check_burst(facts: dict, cells: list[dict]) -> None:
    assert facts["limit"] == LIMIT, facts
    assert facts["up_workers"] == LIMIT + 4 and len(facts["burst_workers"]) == 4, facts
    assert len(facts["burst_jobs_up"]) == 1, facts  # one extra job of 5 ranks: 4 workers
    assert facts["sum"] == 45, facts
    assert facts["burst_jobs_down"] == [] and facts["workers_down"] == LIMIT, facts


def check_env_python(facts: dict, cells: list[dict]) -> None:
    assert facts["rc"] == 0, facts["err"]
    found = json.loads(facts["out"].strip().splitlines()[-1])
    assert found["address"] == facts["address"], (found, facts)
    assert found["sum"] == 3 and found["workers"] == LIMIT, found


def check_hub_ip(config, spawner) -> None:
    assert spawner.ip == "0.0.0.0"
    assert config.JupyterHub.hub_connect_ip == "hub.cluster.example.org"


def check_pbs_burst(config, spawner) -> None:
    env = spawner.dask_burst_env()
    assert env == {"DASK_MPI_LX__BURST__ENABLED": "true", "DASK_MPI_LX__BURST__MAX_JOBS": "4",
                   "DASK_MPI_LX__BURST__QUEUE": "casper@casper-pbs",
                   "DASK_MPI_LX__BURST__MAX_NODES": "1"}, env


def check_labextension(data: dict) -> None:
    from importlib import import_module
    from importlib.util import find_spec

    factory = data["labextension"]["factory"]
    spec = find_spec("dask_labextension")  # not imported: its manager wants an event loop
    assert spec and spec.submodule_search_locations, "dask-labextension is not installed"
    package = Path(next(iter(spec.submodule_search_locations)))
    upstream = yaml.safe_load((package / "labextension.yaml").read_text())["labextension"]
    assert set(data["labextension"]) <= set(upstream), data  # keys dask-labextension reads
    upstream = upstream["factory"]
    assert set(factory) == set(upstream), (factory, upstream)  # module, class, args, kwargs
    assert callable(getattr(import_module(factory["module"]), factory["class"]))
    assert factory["args"] == [] and factory["kwargs"] == {}


REGISTRY: dict[str, Example] = {
    # ------------------------------------------------------------------ README.md
    "README.md#f920b0f4": Example(
        "not-run", "make demo    # local Slurm + JupyterHub + this project; prints the URL and login",
        why="`make demo` and `make test` are what CI itself runs (the stack, and this module)"),
    "README.md#a7e062de": Example(
        "kernel", "from distributed import Client", probes=(
            ("client = Client()", client_facts()),
            ("cluster = MPICluster()", j("{'limit': cluster.limit, 'mode': cluster.mode}")),
            ("cluster.scale(2)", "from distributed import Client as _C\n_c = _C(cluster)\n"
             + j("{'after_scale': len(_c.scheduler_info()['workers'])}") + "\n_c.close()"),
            ("cluster.adapt(minimum=1)", j("{'adaptive': cluster._adaptive is not None}")),
            ("cluster.close()", j("{'status': cluster.status.name, "
                                  "'after_close_sum': client.submit(sum, [2, 3]).result()}")),
        ), check=check_readme_use),
    "README.md#5f3b0ab3": Example(
        "mpirun", "from distributed import Client", np=4, expect=(r"(?m)^3$",)),
    "README.md#ee65c955": Example(
        "shell", "mpirun -np 4 dask-mpi-lx launch -- python -c \\", expect=(r"\A2\n\Z",)),
    "README.md#dc79decf": Example(
        "hub-config", 'c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPISlurmSpawner"   '
        "# or DaskMPIPBSSpawner", renders=(
            Render({"cores": 8}, lines=("#SBATCH --ntasks=8", "#SBATCH --partition=interactive"),
                   prefixes=("mpirun --enable-recovery -np 8 dask-mpi-lx launch ",)),
            Render({"cores": 36, "nodes": 4, "partition": "compute"},
                   lines=("#SBATCH --nodes=4", "#SBATCH --ntasks=36", "#SBATCH --ntasks-per-node=9",
                          "#SBATCH --partition=compute"),
                   prefixes=("mpirun --enable-recovery -np 36 dask-mpi-lx launch ",)),
        )),
    # ------------------------------------------------------------------ docs/user-guide.md
    "docs/user-guide.md#156e8766": Example(
        "kernel", "from distributed import Client",
        probes=(("client = Client()", client_facts()),), check=check_client),
    "docs/user-guide.md#ee2a533b": Example(
        "kernel", "from distributed import Client", probes=(
            ("client = Client(cluster)",
             j("{'jobs_at_start': cluster.jobs}") + "\nclient.wait_for_workers(6, timeout=60)\n"
             + j("{'workers': len(client.scheduler_info()['workers'])}")),
            ("cluster.scale(20)", j("{'jobs_after_scale': cluster.jobs, 'planned': len(cluster.plan),"
                                    " 'cores': sorted(cluster._jobs.cores.values())}")),
            ("cluster.close()",
             "import subprocess as _sp, time as _t\n_ids = ','.join(cluster._jobs.cores)\n"
             "_t0 = _t.monotonic()\n"
             "while (_left := _sp.run(['squeue', '-h', '-o', '%i %T', '-t', 'PD,R,CG,CF,S', "
             "'-j', _ids], capture_output=True, text=True).stdout.split()) "
             "and _t.monotonic() - _t0 < 60:\n"
             "    _t.sleep(1)\n" + j("{'left_after_close': _left}")),
        ), check=check_job_cluster, timeout=400),
    "docs/user-guide.md#26569692": Example(
        "kernel", "from dask_mpi_lx import MPICluster", probes=(
            ("cluster = MPICluster()", j("{'limit': cluster.limit}")),
            ("cluster.scale(cluster.limit + 4)",
             "from distributed import Client as _C\n_c = _C(cluster)\n"
             "_c.wait_for_workers(cluster.limit + 4, timeout=150)\n"
             f"_names = {WORKER_NAMES}\n"
             + j("{'up_workers': len(_names), 'burst_workers': [n for n in _names "
                 f"if n.startswith('job-')], 'burst_jobs_up': {BURST_JOBS}, "
                 "'sum': _c.submit(sum, range(10)).result()}")),
            ("cluster.scale(cluster.limit)",
             "import time as _t\n_t0 = _t.monotonic()\n"
             f"while ({BURST_JOBS} or len(_c.scheduler_info()['workers']) != cluster.limit) "
             "and _t.monotonic() - _t0 < 60:\n    _t.sleep(1)\n"
             + j(f"{{'burst_jobs_down': {BURST_JOBS}, "
                 "'workers_down': len(_c.scheduler_info()['workers'])}")),
        ), check=check_burst, timeout=300),
    "docs/user-guide.md#f0969fff": Example(
        "kernel", "from dask_mpi_lx import MPICluster", probes=(
            ("cluster.scale(2)", j("{'after_scale': repr(cluster)}")),
            ("cluster.adapt(minimum=1)", j("{'adaptive': cluster._adaptive is not None}")),
            ("cluster.close()", j("{'status': cluster.status.name}")),
        ), check=check_user_guide_mpicluster),
    "docs/user-guide.md#423240f6": Example(
        "mpirun", "# mpirun -np 8 python script.py   (or srun -n 8 python script.py)", np=8,
        why="the placeholder `...` prints the workers and a sum",
        replace=(("    ...                    #",
                  "    print('DOCS', len(client.scheduler_info()['workers']), "
                  "client.submit(sum, [1, 2]).result())  #"),),
        expect=(r"(?m)^DOCS 6 3$",), timeout=240),  # ranks 1..7: the scheduler and 6 workers
    "docs/user-guide.md#0515588b": Example(
        "not-run", "dask-mpi-lx clusters list                  # one line per cluster, as below",
        why="the id and output are placeholders; test_job_clusters.py::test_a_job_cluster_is_"
            "found_again_from_another_process_and_a_terminal runs list, scale and close"),
    "docs/user-guide.md#bdbe930b": Example(
        "shell", 'eval "$(dask-mpi-lx env)"', in_job=True,
        expect=(r"<Client: '{address}' processes=" + str(LIMIT) + " ",)),
    "docs/user-guide.md#aa31f178": Example(
        "kernel", "import json, os, subprocess", subprocess=True,
        why="the epilogue connects with Client() and computes",
        epilogue="from distributed import Client\nwith Client() as client:\n"
                 "    print(json.dumps({'address': client.scheduler.address, "
                 "'workers': len(client.scheduler_info()['workers']), "
                 "'sum': client.submit(sum, [1, 2]).result()}))\n",
        check=check_env_python),
    # ------------------------------------------------------------------ docs/admin-guide.md
    "docs/admin-guide.md#732d0c74": Example(
        "hub-config", 'c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPISlurmSpawner"',
        renders=(Render({"cores": 6}, lines=("#SBATCH --ntasks=6", "#SBATCH --partition=interactive"),
                        prefixes=("mpirun --enable-recovery -np 6 /opt/env/bin/dask-mpi-lx launch ",)),)),
    "docs/admin-guide.md#481b0c11": Example(
        "hub-config", 'c.JupyterHub.spawner_class = "dask_mpi_lx_hooks.DaskMPIPBSSpawner"',
        renders=(Render({"cores": 6}, lines=("#PBS -q main@desched1", "#PBS -r n"),
                        prefixes=("mpiexec -n 6 -ppn 6 dask-mpi-lx launch ",)),
                 Render({"cores": 6, "partition": "develop@desched1"},
                        lines=("#PBS -q develop@desched1",)))),
    "docs/admin-guide.md#457bc1df": Example(
        "hub-config", "c.DaskMPISlurmSpawner.dask_max_nodes = 4", spawner="DaskMPISlurmSpawner",
        base={"dask_partitions": ["compute"]},
        why="a fragment: the site's partitions are set elsewhere (here: compute)",
        renders=(Render({"cores": 16, "nodes": 2, "worker_memory": "4GiB"}, excerpt=""),)),
    "docs/admin-guide.md#c677e59c": Example(
        "hub-config", 'c.DaskMPIPBSSpawner.dask_launcher = "pals"                       '
        "# -ppn always", spawner="DaskMPIPBSSpawner",
        base={"dask_partitions": ["develop@desched1", "main@desched1"]},
        why="a fragment: the site's queues are set elsewhere (here: develop, main)",
        renders=(Render({"cores": 16, "nodes": 2, "partition": "develop@desched1",
                         "threads": 2, "worker_memory": "4GiB"}, excerpt="# develop"),
                 Render({"cores": 256, "nodes": 2, "partition": "main@desched1",
                         "worker_memory": "1GiB"}, excerpt="# main"))),
    "docs/admin-guide.md#d018904c": Example(
        "hub-config", 'c.JupyterHub.hub_ip = "0.0.0.0"                  '
        "# or the hub's address on the cluster network", spawner="DaskMPISlurmSpawner",
        renders=(Render({"cores": 6}, prefixes=("mpirun --enable-recovery -np 6 ",)),),
        check=check_hub_ip),
    "docs/admin-guide.md#9c21772e": Example(
        "hub-config", "c.DaskMPIPBSSpawner.dask_burst_max_jobs = 4", spawner="DaskMPIPBSSpawner",
        renders=(Render({"cores": 6}, prefixes=(
            "#PBS -v PATH,DASK_MPI_LX__BURST__ENABLED,DASK_MPI_LX__BURST__MAX_JOBS,"
            "DASK_MPI_LX__BURST__QUEUE,DASK_MPI_LX__BURST__MAX_NODES",)),),
        check=check_pbs_burst),
    "docs/admin-guide.md#11b91657": Example("yaml", "labextension:", check=check_labextension),
}


def examples(runner: str) -> list:
    """pytest params: the blocks of the docs whose entry uses ``runner``."""
    return [pytest.param(b, REGISTRY[b.key], id=b.key,
                         marks=pytest.mark.timeout(int(REGISTRY[b.key].timeout) + 240))
            for b in code_blocks() if b.key in REGISTRY and REGISTRY[b.key].runner == runner]


# --------------------------------------------------------------------------- the registry test

RUNNERS = ("kernel", "mpirun", "shell", "hub-config", "yaml", "not-run")


def test_registry_covers_every_block():
    blocks = code_blocks()
    assert len(blocks) >= 15, [b.key for b in blocks]  # the files were read
    missing = [f"{b.key} (line {b.line}, ```{b.lang}, first line {b.first!r}):\n{b.text}"
               for b in blocks if b.key not in REGISTRY]
    assert not missing, ("examples nobody runs: add each to REGISTRY in "
                         "tests/e2e/test_docs_examples.py, saying how it runs\n\n"
                         + "\n\n".join(missing))
    unknown = [b.key for b in blocks if b.lang not in RUN_LANGS]
    assert not unknown, f"blocks in a language no runner knows: {unknown}"
    keys = {b.key for b in blocks}
    stale = [k for k in REGISTRY if k not in keys]
    assert not stale, f"REGISTRY entries for blocks no longer in the docs: {stale}"
    for b in blocks:
        entry = REGISTRY[b.key]
        assert entry.first == b.first, (b.key, entry.first, b.first)
        assert entry.runner in RUNNERS, (b.key, entry.runner)
        assert entry.runner != "not-run" or entry.why, f"{b.key}: not run, but why?"
        assert (b.lang == "python") == (entry.runner in ("kernel", "mpirun", "hub-config")), b.key
        assert (b.lang == "bash") == (entry.runner in ("shell", "not-run")), b.key
        assert (b.lang == "yaml") == (entry.runner == "yaml"), b.key


def test_every_runner_has_examples():
    for runner in RUNNERS:
        assert examples(runner), runner


# --------------------------------------------------------------------------- hub-config

def _spawner_classes() -> dict:
    import dask_mpi_lx_hooks

    return {n: getattr(dask_mpi_lx_hooks, n) for n in ("DaskMPISlurmSpawner", "DaskMPIPBSSpawner")}


def load_hub_config(block: Block):
    from traitlets.config import Config

    config = Config()
    exec(compile(block.text, f"{block.file}:{block.line}", "exec"),
         {"get_config": lambda: config, "c": config, "__name__": "jupyterhub_config"})
    return config


def excerpt_expectations(text: str, section: str) -> tuple[list[str], list[str]]:
    """Whole lines and line prefixes the ```text excerpt (or its section) shows."""
    lines, prefixes, inside = [], [], section == ""
    for raw in text.splitlines():
        if raw.startswith("# ") and not raw.startswith("#SBATCH") and not raw.startswith("#PBS"):
            inside = section == "" or raw.startswith(section)
            continue
        if not inside or not raw.strip():
            continue
        line = re.split(r"\s{2,}#", raw, maxsplit=1)[0].rstrip()
        if line.endswith(" ..."):
            prefixes.append(line[:-3])
        else:
            lines.append(line)
    return lines, prefixes


@pytest.mark.parametrize("block,example", examples("hub-config"))
def test_hub_config_examples(block: Block, example: Example):
    from jupyterhub.app import JupyterHub
    from jupyterhub.spawner import Spawner

    from tests.unit.test_hub_spawner import make, submit

    config = load_hub_config(block)
    classes = _spawner_classes()
    owners = {"JupyterHub": JupyterHub, "Spawner": Spawner, **classes}
    for section in config:
        assert section in owners, f"{block.key}: c.{section} configures nothing known"
        for name in config[section]:
            assert name in owners[section].class_trait_names(), f"c.{section}.{name} is not a trait"
    if "spawner_class" in config.JupyterHub:
        name = config.JupyterHub.spawner_class
        assert name.startswith("dask_mpi_lx_hooks."), name
        cls = classes[name.rsplit(".", 1)[1]]
    else:
        cls = classes[example.spawner]
    for trait, value in example.base.items():
        config[cls.__name__].setdefault(trait, value)
    spawner = make(cls, config=config)
    for name, value in config[cls.__name__].items():
        assert getattr(spawner, name) == value, (name, getattr(spawner, name), value)
    for render in example.renders:
        spawner = make(cls, config=config)
        spawner.user_options = dict(render.options)
        script = submit(spawner)
        lines, prefixes = list(render.lines), list(render.prefixes)
        if render.excerpt is not None:
            more_lines, more_prefixes = excerpt_expectations(text_block_after(block).text,
                                                             render.excerpt)
            assert more_lines or more_prefixes, render
            lines += more_lines
            prefixes += more_prefixes
        have = script.splitlines()
        for line in lines:
            assert line in have, f"{render.options}: no line {line!r} in\n{script}"
        for prefix in prefixes:
            assert any(x.startswith(prefix) for x in have), \
                f"{render.options}: no line starts with {prefix!r} in\n{script}"
    if example.check:
        example.check(config, make(cls, config=config))


# --------------------------------------------------------------------------- yaml

@pytest.mark.parametrize("block,example", examples("yaml"))
def test_yaml_examples(block: Block, example: Example):
    data = yaml.safe_load(block.text)
    assert isinstance(data, dict) and data, block.text
    defaults = yaml.safe_load((ROOT / "src" / "dask_mpi_lx" / "mpi-lx.yaml").read_text())["mpi-lx"]

    def known(section: dict, reference: dict, where: str) -> None:
        for key, value in section.items():
            assert key in reference, f"{where}.{key} is not an mpi-lx key"
            if isinstance(value, dict) and isinstance(reference[key], dict) \
                    and where + "." + key != "mpi-lx.rank-config":
                known(value, reference[key], f"{where}.{key}")

    if "mpi-lx" in data:
        known(data["mpi-lx"], defaults, "mpi-lx")
    assert example.check or "mpi-lx" in data, f"{block.key}: nothing checks this block"
    if example.check:
        example.check(data)


# --------------------------------------------------------------------------- not-run

@pytest.mark.parametrize("block,example", examples("not-run"))
def test_not_run_examples_say_why(block: Block, example: Example):
    assert len(example.why.split()) >= 4, example.why


# --------------------------------------------------------------------------- mpirun, shell on this host

def host_env() -> dict:
    """This host's environment for a doc command: the venv first on PATH (`python`,
    `dask-mpi-lx`), and Open MPI allowed to run as root and to oversubscribe."""
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    return env


def substituted(block: Block, example: Example) -> str:
    text = block.text
    for old, new in example.replace:
        assert text.count(old) == 1, f"{block.key}: {old!r} must occur once"
        text = text.replace(old, new)
    return text


def assert_expected(example: Example, out: str, address: str = "") -> None:
    for pattern in example.expect:
        if "{address}" in pattern:
            pattern = pattern.replace("{address}", re.escape(address))
        assert re.search(pattern, out), f"{pattern!r} not in the output:\n{out}"


@pytest.mark.mpi
@pytest.mark.parametrize("block,example", examples("mpirun"))
def test_mpirun_examples(block: Block, example: Example, tmp_path):
    from tests import mpirun

    mpirun.require("mpirun")
    script = tmp_path / "script.py"
    script.write_text(substituted(block, example))
    result = mpirun.run([sys.executable, str(script)], example.np, timeout=example.timeout,
                        env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.describe()
    assert_expected(example, result.stdout)
    print(f"{block.key}: mpirun -np {example.np} took {result.seconds:.1f}s")


# --------------------------------------------------------------------------- in alice's job

@pytest.fixture(scope="module")
def server(hub: Hub) -> dict:
    yield from spawned_server(hub, USER, OPTIONS)


async def _execute(ws_url: str, token: str, code: str, timeout: float) -> dict:
    """One cell: its stdout, stderr, error, and displayed result (text/plain, text/html)."""
    import asyncio
    import uuid

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    ws.write_message(execute_request(code, msg_id, store_history=True))
    out = {"code": code, "stdout": "", "stderr": "", "error": None, "result": "", "html": "",
           "mimetypes": [], "done": False}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(),
                                         timeout=max(1, deadline - time.monotonic()))
            if raw is None:
                break
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out[content["name"]] += content["text"]
            elif kind == "error":
                out["error"] = "\n".join(content["traceback"])
            elif kind in ("execute_result", "display_data"):  # a Cluster displays itself
                out["result"] += content["data"].get("text/plain", "")
                out["html"] += content["data"].get("text/html", "")
                out["mimetypes"] += sorted(content["data"])
            elif kind == "status" and content["execution_state"] == "idle":
                out["done"] = True
                break
    except asyncio.TimeoutError:
        pass
    finally:
        ws.close()
    return out


class Kernel:
    """A kernel of the user's server, kept across cells (as a notebook's)."""

    def __init__(self, hub: Hub, user: str):
        self.hub, self.user = hub, user
        r = hub.request("POST", f"/user/{user}/api/kernels", {"name": "python3"})
        assert r.status == 201, r.body
        self.id = r.json()["id"]
        self.ws_url = (hub.url.replace("http", "ws", 1)
                       + f"/user/{user}/api/kernels/{self.id}/channels")

    def run(self, code: str, timeout: float) -> dict:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            out = pool.submit(asyncio.run, _execute(self.ws_url, self.hub.token, code,
                                                    timeout)).result()
        assert out["done"], f"the cell did not finish within {timeout}s:\n{code}\n{out}"
        assert out["error"] is None, f"the cell failed:\n{code}\n{out['error']}\n{out['stderr']}"
        return out

    def close(self) -> None:
        self.hub.request("DELETE", f"/user/{self.user}/api/kernels/{self.id}")


def facts_of(out: dict) -> dict:
    facts = {}
    for line in out["stdout"].splitlines():
        if line.startswith("JSON "):
            facts.update(json.loads(line[5:]))
    return facts


def statements(text: str) -> list[tuple[str, str]]:
    """The block cut into its top-level statements, each with the statement's first line
    (comments and blank lines before a statement go with it, those after the last with the
    last); the pieces joined are the block's text."""
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    ends = [s.end_lineno for s in tree.body[:-1]] + [len(lines)]
    pieces, start = [], 0
    for stmt, end in zip(tree.body, ends, strict=True):
        pieces.append(("".join(lines[start:end]), lines[stmt.lineno - 1].strip()))
        start = end
    assert "".join(p for p, _ in pieces) == text
    return pieces


#: Run before each kernel example (not part of it): the job's cluster gets all its workers
#: back, whatever the example before parked.
RESET = f"""
from dask_mpi_lx import MPICluster as _MPICluster
with _MPICluster() as _reset:
    _reset.scale(_reset.limit)
    assert _reset.limit == {LIMIT}, _reset.limit
del _MPICluster, _reset
"""

#: Runs ``SCRIPT`` (python or bash) in a subprocess of the kernel, in the job, without the
#: variables that point a process at the job's cluster: a process that did not inherit
#: Jupyter's environment (an ssh session, a site kernel).
IN_JOB_SUBPROCESS = r'''
import json, os, subprocess, sys
_env = {k: v for k, v in os.environ.items() if k not in ("DASK_CONFIG", "DASK_SCHEDULER_ADDRESS")}
_argv = ["bash", "-c", SCRIPT] if KIND == "bash" else [sys.executable, "-c", SCRIPT]
_p = subprocess.run(_argv, env=_env, capture_output=True, text=True, timeout=TIMEOUT)
print("JSON " + json.dumps({"rc": _p.returncode, "out": _p.stdout, "err": _p.stderr[-3000:],
                            "address": os.environ["DASK_SCHEDULER_ADDRESS"]}))
'''


def in_job_subprocess(kind: str, script: str, timeout: float) -> str:
    return (IN_JOB_SUBPROCESS.replace("SCRIPT", repr(script)).replace("KIND", repr(kind))
            .replace("TIMEOUT", str(timeout)))


def run_kernel_example(hub: Hub, block: Block, example: Example) -> tuple[dict, list[dict]]:
    kernel = Kernel(hub, USER)
    try:
        kernel.run(RESET, timeout=120)
        if example.subprocess:
            script = block.text + example.epilogue
            out = kernel.run(in_job_subprocess("python", script, example.timeout),
                             example.timeout + 30)
            return facts_of(out), [out]
        pieces = statements(block.text)
        probes = dict(example.probes)
        for first in probes:  # each probe follows exactly one statement
            assert sum(line.startswith(first) for _, line in pieces) == 1, (first, pieces)
        facts: dict = {}
        cells = []
        for chunk, line in pieces:
            cell = kernel.run(chunk, example.timeout)
            cells.append({**cell, "code": chunk.strip()})
            probe = next((p for first, p in probes.items() if line.startswith(first)), None)
            if probe:
                facts.update(facts_of(kernel.run(probe, example.timeout)))
        if example.epilogue:
            facts.update(facts_of(kernel.run(example.epilogue, example.timeout)))
        return facts, cells
    finally:
        kernel.close()


@pytest.mark.e2e
@pytest.mark.slurm_only  # the guides' examples name Slurm's tools
@pytest.mark.parametrize("block,example", examples("kernel"))
def test_kernel_examples(hub: Hub, server: dict, block: Block, example: Example):
    t0 = time.monotonic()
    facts, cells = run_kernel_example(hub, block, example)
    assert example.check, f"{block.key}: nothing checks what it computed"
    example.check(facts, cells)
    print(f"{block.key}: {len(cells)} cell(s), {time.monotonic() - t0:.1f}s, facts {facts}")


@pytest.mark.mpi
@pytest.mark.slurm_only  # the guides' examples name Slurm's tools
@pytest.mark.parametrize("block,example", examples("shell"))
def test_shell_examples(request, batch, block: Block, example: Example):
    """On this host with bash; ``in_job``: from a kernel of alice's job (the stack)."""
    from tests import mpirun

    t0 = time.monotonic()
    if example.in_job:
        hub, _ = request.getfixturevalue("hub"), request.getfixturevalue("server")
        kernel = Kernel(hub, USER)
        try:
            kernel.run(RESET, timeout=120)
            out = kernel.run(in_job_subprocess("bash", substituted(block, example),
                                               example.timeout), example.timeout + 30)
        finally:
            kernel.close()
        facts = facts_of(out)
        assert facts["rc"] == 0, facts
        assert_expected(example, facts["out"], facts["address"])
        print(f"{block.key}: in the job, {time.monotonic() - t0:.1f}s: {facts['out']!r}")
        return
    if "mpirun" in block.text:
        mpirun.require("mpirun")
    proc = subprocess.Popen(["bash", "-c", substituted(block, example)], env=host_env(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=example.timeout)
    except subprocess.TimeoutExpired:
        mpirun.stop_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"{block.key} timed out after {example.timeout}s\n{out}\n{err}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert_expected(example, out)
    print(f"{block.key}: on this host, {time.monotonic() - t0:.1f}s: {out!r}")
