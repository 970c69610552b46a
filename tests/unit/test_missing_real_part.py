"""`missing_real_part`: a failure under CI (CI=true or CI=1), a skip elsewhere."""

import pytest

from tests.conftest import missing_real_part


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_ci_fails(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="no mpirun"):
        missing_real_part("no mpirun")


@pytest.mark.parametrize("value", [None, "", "0", "false"])
def test_elsewhere_skips(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="no mpirun"):
        missing_real_part("no mpirun")
