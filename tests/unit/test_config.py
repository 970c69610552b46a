import dask.config
import pytest
import yaml

from dask_mpi_lx import config
from dask_mpi_lx.exceptions import ConfigError


def test_defaults_yaml_covers_every_setting_and_nothing_else():
    top = set(config.DEFAULTS["mpi-lx"]) - {"attach", "rank-config", "keepalive", "jobs", "burst"}
    assert top == set(config.setting_keys())


def test_every_default_key_is_commented():
    lines = config.DEFAULTS_FILE.read_text().splitlines()
    keyed = [x for x in lines if x.startswith("  ") and ":" in x and not x.strip().startswith("#")
             and not x.rstrip().endswith(":")]
    assert keyed and all("#" in x for x in keyed), [x for x in keyed if "#" not in x]


def test_resolve_defaults():
    s = config.resolve()
    assert s.tls is True and s.protocol == "tls"
    assert s.worker_class == "distributed.Nanny"
    assert s.scheduler_timeout == 30 and s.poll_interval == 0.1
    assert s.stop_timeout(6) == 4.9 and config.resolve(shutdown_timeout="10s").stop_timeout(6) == 10


def test_flag_beats_environment_beats_yaml(monkeypatch):
    monkeypatch.setenv("DASK_MPI_LX__NTHREADS", "3")
    dask.config.refresh()
    try:
        assert config.resolve().nthreads == 3
        assert config.resolve(nthreads=5).nthreads == 5
    finally:
        monkeypatch.delenv("DASK_MPI_LX__NTHREADS")
        dask.config.refresh()
    assert config.resolve().nthreads == 1


def test_config_file_value_is_used():
    with dask.config.set({"mpi-lx.memory-limit": "2GiB"}):
        assert config.resolve().memory_limit == 2 * 2**30


@pytest.mark.parametrize("key,value,expected", [
    ("nthreads", 0, "a whole number >= 1"),
    ("nthreads", "two", "a whole number >= 1"),
    ("memory_limit", "lots", "a size like"),
    ("memory_limit", -1, "zero (no limit) or more"),
    ("scheduler_port", 70000, "a port number"),
    ("scheduler_timeout", "soon", "a duration"),
    ("scheduler_timeout", 0, "above zero"),
    ("protocol", "carrier-pigeon", "one of tls, tcp"),
    ("worker_class", "Nanny", "dotted class path"),
    ("tls", "maybe", "true or false"),
    ("notebook_host_nice", 20, "from 0 (off) to 19"),
    ("notebook_host_nice", -1, "from 0 (off) to 19"),
    ("notebook_host_nice", "low", "from 0 (off) to 19"),
    ("notebook_host_nice", True, "from 0 (off) to 19"),
])
def test_bad_values_name_the_key_and_what_is_expected(key, value, expected):
    with pytest.raises(ConfigError) as e:
        config.resolve(**{key: value})
    assert f"mpi-lx.{key.replace('_', '-')}" in str(e.value)
    assert expected in str(e.value)


def test_tcp_with_tls_on_is_refused():
    with pytest.raises(ConfigError, match="--no-tls"):
        config.resolve(protocol="tcp")
    assert config.resolve(tls=False).protocol == "tcp"


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="a known mpi-lx setting"):
        config.resolve(threads=2)


def test_settings_roundtrip_as_yaml():
    data = yaml.safe_load(yaml.safe_dump(config.resolve().as_dict()))
    assert data["worker_class"] == "distributed.Nanny"


def test_keepalive_interval_default_env_and_off(monkeypatch):
    assert config.keepalive_interval() == 60.0
    with dask.config.set({"mpi-lx.keepalive.interval": "5s"}):
        assert config.keepalive_interval() == 5.0
    with dask.config.set({"mpi-lx.keepalive.interval": None}):
        assert config.keepalive_interval() is None
    with dask.config.set({"mpi-lx.keepalive.interval": "soon"}), \
            pytest.raises(ConfigError, match="mpi-lx.keepalive.interval"):
        config.keepalive_interval()


def test_settings_do_not_depend_on_import_order(monkeypatch):
    """After the global config was reset or restored to a snapshot taken before this
    package was imported (distributed's gen_test), every mpi-lx setting still has its
    packaged default."""
    monkeypatch.setattr(dask.config, "config", {})
    assert config.setting("attach.timeout") == "120s"
    assert config.attach_setting("timeout") == 120.0
    assert config.attach_setting("scale-timeout") == 60.0
    assert config.keepalive_interval() == 60.0
    assert config.resolve().worker_class == "distributed.Nanny"
    assert config.rank_dask_config()["distributed.admin.tick.interval"] == "1s"
    with dask.config.set({"mpi-lx.attach.timeout": "5s"}):
        assert config.attach_setting("timeout") == 5.0
    with pytest.raises(KeyError):
        config.setting("no-such-key")


def test_job_keys_are_constants_under_mpi_lx_job():
    assert config.JOB_DASHBOARD_LINK == "mpi-lx.job.dashboard-link"
    assert config.job_setting(config.JOB_ID) is None
    with dask.config.set({config.JOB_ID: "7"}):
        assert config.job_setting(config.JOB_ID) == "7"
