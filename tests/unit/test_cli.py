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


def test_missing_compute_extra_is_one_line_before_mpi_starts(monkeypatch):
    """`pip install dask-mpi-lx` without [compute]: launch and serve say which extra to
    install and exit, on every rank, without starting MPI or printing a traceback."""
    import importlib.util

    import dask_mpi_lx.launcher.launch as launch_module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cryptography" else real(name, *a))
    started = []
    monkeypatch.setattr(launch_module, "run_launch", lambda *a: started.append(a))
    monkeypatch.setattr(launch_module, "run_serve", lambda *a: started.append(a))
    for argv in (["launch", "--", "true"], ["serve", "--cluster-dir", "/nonexistent"]):
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 1, result.output
        assert "needs cryptography" in result.output
        assert "pip install 'dask-mpi-lx[compute]'" in result.output
        assert "Traceback" not in result.output
    assert started == []


def test_serve_always_runs_with_tls_whatever_the_environment_says(monkeypatch):
    """A job inherits the submitter's environment (Slurm's --export=ALL): a stray
    DASK_MPI_LX__TLS=false must not give a job cluster an unencrypted scheduler."""
    import dask_mpi_lx.launcher.launch as launch_module

    seen = []
    monkeypatch.setattr(launch_module, "run_serve", lambda settings, opts: seen.append(settings))
    with env_config(monkeypatch, "DASK_MPI_LX__TLS", "false"):
        result = CliRunner().invoke(main, ["serve", "--cluster-dir", "/nonexistent"])
    assert result.exit_code == 0, result.output
    assert seen and seen[0].tls is True and seen[0].protocol == "tls"
    for flag in (["--no-tls"], ["--protocol", "tcp"]):
        result = CliRunner().invoke(main, ["serve", "--cluster-dir", "/x", *flag])
        assert result.exit_code == 1 and "always uses TLS" in result.output, result.output
