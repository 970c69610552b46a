"""Pure: the shape of one MPI batch job of a cluster, read from the `mpi-lx.jobs` (or
`mpi-lx.burst`) config and arguments, every value checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dask.utils import parse_bytes

from dask_mpi_lx_hooks.wrap import LAUNCHERS as HUB_LAUNCHERS

from ..config import NAMESPACE, setting, whole_number
from ..exceptions import ConfigError

BATCH_SYSTEMS = ("slurm", "pbs")
LAUNCHERS = tuple(HUB_LAUNCHERS)  # the hub's: a job cluster starts its ranks alike
MIN_FIRST_JOB = 3  # keeper, scheduler, one worker
MIN_JOINING_JOB = 2  # keeper, one worker
MAX_TEXT = 64


@dataclass(frozen=True)
class JobSpec:
    """One job: ``cores`` MPI ranks over ``nodes`` nodes, each worker ``threads`` threads."""

    batch_system: str = "slurm"
    nodes: int = 1
    cores: int = 4
    threads: int = 1
    worker_memory: int = 2 * 2**30
    walltime: int = 3600  # seconds
    queue: str | None = None
    account: str | None = None
    launcher: str = "mpirun"
    launcher_args: tuple[str, ...] = ()
    prologue: str = ""
    template: str | None = None
    job_extra: tuple[str, ...] = ()  # extra batch directives, without "#SBATCH"/"#PBS"

    @property
    def ranks_per_node(self) -> int:
        return self.cores // self.nodes

    def workers(self, joining: bool) -> int:
        """Workers the job runs: all ranks but rank 0, and the scheduler in a first job."""
        return self.cores - (1 if joining else 2)

    @property
    def walltime_hms(self) -> str:
        h, rest = divmod(self.walltime, 3600)
        return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"

    def as_settings(self) -> dict[str, Any]:
        """This shape as `job_spec` overrides (plain values: a cluster directory keeps it)."""
        return {"batch_system": self.batch_system, "nodes": self.nodes, "cores": self.cores,
                "threads": self.threads, "worker_memory": self.worker_memory,
                "walltime": self.walltime_hms, "queue": self.queue, "account": self.account,
                "launcher": self.launcher, "launcher_args": list(self.launcher_args),
                "prologue": self.prologue, "template": self.template,
                "job_extra": list(self.job_extra)}

    def memory_per_node(self) -> int:
        """Every rank's worker memory, plus 1 GiB for rank 0 and the scheduler."""
        return self.worker_memory * self.ranks_per_node + 2**30


# upper bounds: a typo (cores=1000000) is refused here rather than by the batch system
MAX_NODES = 10_000
MAX_CORES = 1_000_000
MAX_THREADS = 1_024
MAX_WALLTIME = 366 * 86400  # seconds


def _int(key: str, value: Any, low: int = 1, high: int = MAX_CORES) -> int:
    return whole_number(key, value, low, high, f"a whole number from {low} to {high}")


def parse_walltime(key: str, value: Any) -> int:
    """``HH:MM:SS`` (or ``MM:SS``, or seconds) as seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_WALLTIME:
        return value
    parts = str(value).strip().split(":")
    if not 1 <= len(parts) <= 3 or len(str(value)) > 16 or \
            not all(p.isascii() and p.isdigit() for p in parts):
        raise ConfigError(key, value, 'a walltime like "01:30:00"')
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    if not 0 < seconds <= MAX_WALLTIME:
        raise ConfigError(key, value, "a walltime above zero and at most 366 days")
    return seconds


def _text(key: str, value: Any, choices: tuple[str, ...] = ()) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or "\n" in value:
        raise ConfigError(key, value, f"a name of at most {MAX_TEXT} characters")
    if choices and value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(choices))
    if not choices and not all(c.isalnum() or c in "@._-+:" for c in value):
        raise ConfigError(key, value, "letters, digits and @._-+:")
    return value


def job_spec(section: str = "jobs", **overrides: Any) -> JobSpec:
    """The `mpi-lx.<section>` job shape with ``overrides`` (None: keep the config's), checked:
    `ConfigError` names the key, the value and what is allowed."""
    def raw(name: str) -> Any:
        value = overrides.get(name.replace("-", "_"))
        return setting(f"{section}.{name}") if value is None else value

    def key(name: str) -> str:
        return f"{NAMESPACE}.{section}.{name}"

    nodes = _int(key("nodes"), raw("nodes"), 1, MAX_NODES)
    cores = _int(key("cores"), raw("cores"), MIN_JOINING_JOB)
    if cores % nodes:
        raise ConfigError(key("cores"), cores, f"a multiple of nodes ({nodes})")
    memory = raw("worker-memory")
    try:
        worker_memory = parse_bytes(memory) if isinstance(memory, str) else int(memory)
    except (TypeError, ValueError):
        raise ConfigError(key("worker-memory"), memory, 'a size like "2GiB"') from None
    if worker_memory <= 0:
        raise ConfigError(key("worker-memory"), memory, "a size above zero")
    args = raw("launcher-args") or ()
    if isinstance(args, str) or not all(isinstance(a, str) for a in args):
        raise ConfigError(key("launcher-args"), args, "a list of strings")
    extra = raw("job-extra") or ()
    if isinstance(extra, str) or not all(
            isinstance(a, str) and a.strip() and "\n" not in a and len(a) <= 200 for a in extra):
        raise ConfigError(key("job-extra"), extra, "a list of one-line batch directives")
    prologue = raw("prologue") or ""
    if not isinstance(prologue, str):
        raise ConfigError(key("prologue"), prologue, "shell lines as one string")
    return JobSpec(
        batch_system=_text(key("batch-system"), raw("batch-system"), BATCH_SYSTEMS) or "slurm",
        nodes=nodes,
        cores=cores,
        threads=_int(key("threads"), raw("threads"), 1, MAX_THREADS),
        worker_memory=worker_memory,
        walltime=parse_walltime(key("walltime"), raw("walltime")),
        queue=_text(key("queue"), raw("queue")),
        account=_text(key("account"), raw("account")),
        launcher=_text(key("launcher"), raw("launcher"), LAUNCHERS) or "mpirun",
        launcher_args=tuple(args),
        prologue=prologue,
        template=raw("template") or None,
        job_extra=tuple(a.strip() for a in extra),
    )
