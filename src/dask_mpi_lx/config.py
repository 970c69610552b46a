"""The `mpi-lx` dask-config namespace: load the defaults YAML and resolve typed settings."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

from .exceptions import ConfigError

NAMESPACE = "mpi-lx"
DEFAULTS_FILE = Path(__file__).with_name("mpi-lx.yaml")

with DEFAULTS_FILE.open() as _f:
    DEFAULTS: dict[str, Any] = yaml.safe_load(_f)

dask.config.update_defaults(DEFAULTS)

# What the launcher writes into the notebook's job config (launcher/notebook_env.py)
JOB = f"{NAMESPACE}.job"
JOB_ID = f"{JOB}.id"                                  # the batch system's job id
JOB_SCHEDULER_ADDRESS = f"{JOB}.scheduler-address"    # the job's scheduler
JOB_DASHBOARD = f"{JOB}.dashboard"                    # [host, port] it listens on
JOB_DASHBOARD_SOCKET = f"{JOB}.dashboard-socket"      # its owner-only Unix socket, if any
JOB_DASHBOARD_LINK = f"{JOB}.dashboard-link"          # the link for the job's cluster only

_MISSING = object()

PROTOCOLS = ("tls", "tcp", "inproc", "ucx")


@dataclass(frozen=True)
class Settings:
    """Validated settings for building the Dask part of an MPI job.

    One field per key of the `mpi-lx` namespace (hyphens become underscores),
    and one CLI flag per field (``--memory-limit`` for ``memory_limit``).
    """

    nthreads: int
    memory_limit: str | int | float | None
    worker_class: str
    local_directory: str | None
    interface: str | None
    protocol: str
    tls: bool
    scheduler_port: int
    dashboard: bool
    dashboard_address: str | None
    job_directory: str
    wait_for_workers: bool
    scheduler_timeout: float
    shutdown_timeout: float | None
    poll_interval: float
    mpi_init_timeout: float
    notebook_host_nice: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def stop_timeout(self, world_size: int) -> float:
        """`shutdown_timeout`, or 4 s plus 0.15 s per rank (stopping many oversubscribed
        ranks takes longer than a few)."""
        return self.shutdown_timeout or 4.0 + 0.15 * world_size


def setting(key: str) -> Any:
    """``mpi-lx.<key>`` from the dask config, else its packaged default: never depends on
    whether this module was imported before the global config was last reset or restored
    (distributed's ``gen_test`` does both). `KeyError` for a key with no default."""
    value = dask.config.get(f"{NAMESPACE}.{key}", default=_MISSING)
    if value is _MISSING:
        value = dask.config.get(key, config=DEFAULTS[NAMESPACE])
    return value


def job_setting(key: str) -> Any:
    """One of the ``JOB_*`` keys, None outside a job started by ``dask-mpi-lx launch``."""
    return dask.config.get(key, default=None)


def setting_keys() -> list[str]:
    """Config keys (hyphenated) that map onto `Settings` fields and CLI flags."""
    return [f.name.replace("_", "-") for f in fields(Settings)]


def whole_number(key: str, value: Any, low: int, high: int | None, expected: str) -> int:
    """``value`` as an int from ``low`` to ``high`` (None: no bound); else `ConfigError`."""
    if isinstance(value, bool):
        raise ConfigError(key, value, expected)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, expected) from None
    if number < low or (high is not None and number > high) or number != float(value):
        raise ConfigError(key, value, expected)
    return number


def _positive_int(key: str, value: Any) -> int:
    return whole_number(key, value, 1, None, "a whole number >= 1")


def _niceness(key: str, value: Any) -> int:
    return whole_number(key, value, 0, 19, "a whole number from 0 (off) to 19")


def _seconds(key: str, value: Any) -> float:
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (TypeError, ValueError, KeyError):
        raise ConfigError(key, value, 'a duration such as "30s" or 2.5') from None
    if seconds is None or seconds <= 0:
        raise ConfigError(key, value, "a duration above zero")
    return float(seconds)


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(key, value, "true or false")


def _memory_limit(key: str, value: Any) -> str | int | float | None:
    if value is None or value == "auto":
        return value
    if isinstance(value, bool):
        raise ConfigError(key, value, '"auto", a size like "4GiB", or a fraction like 0.5')
    if isinstance(value, (int, float)):
        number = value
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                number = parse_bytes(text)
            except (ValueError, TypeError):
                raise ConfigError(
                    key, value, '"auto", a size like "4GiB", or a fraction like 0.5'
                ) from None
    if number < 0:
        raise ConfigError(key, value, "a size of zero (no limit) or more")
    return number


def _port(key: str, value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, "a port number 0-65535 (0 = any free port)") from None
    if not 0 <= port <= 65535 or isinstance(value, bool):
        raise ConfigError(key, value, "a port number 0-65535 (0 = any free port)")
    return port


def _optional_str(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(key, value, "a string")
    return value


def _default_nthreads() -> int:
    cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("OMP_NUM_THREADS")
    try:
        return max(1, int(cpus)) if cpus else 1
    except ValueError:
        return 1


def resolve(**overrides: Any) -> Settings:
    """Read the `mpi-lx` namespace, apply non-None overrides, validate, return `Settings`.

    Raises `ConfigError` naming the key, the bad value and what is expected.
    """
    # one get() per key: dask matches "memory-limit" and "memory_limit" (as set from the
    # environment) only key by key
    raw = {k: setting(k) for k in setting_keys()}
    unknown = [k for k in overrides if k.replace("_", "-") not in setting_keys()]
    if unknown:
        raise ConfigError(unknown[0], overrides[unknown[0]], "a known mpi-lx setting")
    for name, value in overrides.items():
        if value is not None:
            raw[name.replace("_", "-")] = value

    def key(name: str) -> str:
        return f"{NAMESPACE}.{name}"

    tls = _bool(key("tls"), raw.get("tls"))
    protocol = raw.get("protocol") or ("tls" if tls else "tcp")
    protocol = str(protocol).removesuffix("://")
    if protocol not in PROTOCOLS:
        raise ConfigError(key("protocol"), protocol, "one of " + ", ".join(PROTOCOLS))
    if tls and protocol == "tcp":
        raise ConfigError(
            key("protocol"), protocol, "tls (or turn TLS off explicitly with --no-tls)"
        )
    if not tls and protocol == "tls":
        raise ConfigError(key("protocol"), protocol, "tcp when TLS is turned off")
    worker_class = raw.get("worker-class")
    if not isinstance(worker_class, str) or "." not in worker_class:
        raise ConfigError(key("worker-class"), worker_class, "a dotted class path like distributed.Nanny")
    nthreads = raw.get("nthreads")
    return Settings(
        nthreads=_default_nthreads() if nthreads is None else _positive_int(key("nthreads"), nthreads),
        memory_limit=_memory_limit(key("memory-limit"), raw.get("memory-limit")),
        worker_class=worker_class,
        local_directory=_optional_str(key("local-directory"), raw.get("local-directory")),
        interface=_optional_str(key("interface"), raw.get("interface")),
        protocol=protocol,
        tls=tls,
        scheduler_port=_port(key("scheduler-port"), raw.get("scheduler-port")),
        dashboard=_bool(key("dashboard"), raw.get("dashboard")),
        dashboard_address=_optional_str(key("dashboard-address"), raw.get("dashboard-address")),
        job_directory=_optional_str(key("job-directory"), raw.get("job-directory"))
        or os.environ.get("TMPDIR")
        or "/tmp",
        wait_for_workers=_bool(key("wait-for-workers"), raw.get("wait-for-workers")),
        scheduler_timeout=_seconds(key("scheduler-timeout"), raw.get("scheduler-timeout")),
        shutdown_timeout=None if raw.get("shutdown-timeout") is None
        else _seconds(key("shutdown-timeout"), raw.get("shutdown-timeout")),
        poll_interval=_seconds(key("poll-interval"), raw.get("poll-interval")),
        mpi_init_timeout=_seconds(key("mpi-init-timeout"), raw.get("mpi-init-timeout")),
        notebook_host_nice=_niceness(key("notebook-host-nice"), raw.get("notebook-host-nice")),
    )


def rank_dask_config() -> dict[str, Any]:
    """`mpi-lx.rank-config`: dask config for the scheduler and worker ranks."""
    value = setting("rank-config") or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{NAMESPACE}.rank-config", value, "a mapping of dask config keys")
    return dict(value)


def attach_setting(name: str) -> float:
    """A duration from `mpi-lx.attach.<name>`, in seconds."""
    return _seconds(f"{NAMESPACE}.attach.{name}", setting(f"attach.{name}"))


def duration(key: str, value: Any = None) -> float:
    """``value`` (when given) or ``mpi-lx.<key>`` as seconds; `ConfigError` if it is not one."""
    return _seconds(f"{NAMESPACE}.{key}", setting(key) if value is None else value)


def burst_enabled() -> bool:
    """Whether the site lets a job burst past its allocation (`mpi-lx.burst.enabled`)."""
    return _bool(f"{NAMESPACE}.burst.enabled", setting("burst.enabled"))


def keepalive_interval() -> float | None:
    """`mpi-lx.keepalive.interval` in seconds; None when switched off."""
    value = setting("keepalive.interval")
    return None if value is None else _seconds(f"{NAMESPACE}.keepalive.interval", value)
