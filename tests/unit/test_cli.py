from contextlib import contextmanager

import dask.config
from click.testing import CliRunner

from dask_mpi_lx.cli import main


def test_help_lists_every_setting_flag():
    from dask_mpi_lx.config import setting_keys

    out = CliRunner().invoke(main, ["launch", "--help"]).output
    for key in setting_keys():
        switches = ("tls", "dashboard", "wait-for-workers")
        flag = f"--{key} / --no-{key}" if key in switches else f"--{key}"
        assert flag in out, key


def test_missing_command_is_a_click_error():
    result = CliRunner().invoke(main, ["launch"])
    assert result.exit_code == 2
    assert "Missing argument 'CMD...'" in result.output


def test_bad_option_without_command_names_the_option():
    result = CliRunner().invoke(main, ["launch", "--nthreads", "zero"])
    assert result.exit_code == 2
    assert "'--nthreads'" in result.output


@contextmanager
def env_config(monkeypatch, name: str, value: str):
    """dask config as it is read from the environment with ``name=value`` set."""
    monkeypatch.setenv(name, value)
    dask.config.refresh()
    try:
        yield
    finally:
        monkeypatch.delenv(name)
        dask.config.refresh()


def test_config_command_shows_resolved_settings(monkeypatch):
    with env_config(monkeypatch, "DASK_MPI_LX__SCHEDULER_PORT", "8786"):
        result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0
    assert "scheduler-port: 8786" in result.output


def test_config_command_reports_bad_values_without_a_traceback(monkeypatch):
    with env_config(monkeypatch, "DASK_MPI_LX__POLL_INTERVAL", "often"):
        result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 1
    assert "mpi-lx.poll-interval: got 'often'" in result.output
    assert "Traceback" not in result.output
