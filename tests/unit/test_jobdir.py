import stat

import pytest
import yaml

from dask_mpi_lx.exceptions import MPILXError
from dask_mpi_lx.launcher.jobdir import JobDirectory
from dask_mpi_lx.launcher.jobtls import new_job_tls, security_for


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_job_directory_is_private_and_removed(tmp_path):
    jd = JobDirectory(str(tmp_path), "42/../x")
    assert jd.path.parent == tmp_path and mode(jd.path) == 0o700
    paths = jd.write_tls(new_job_tls())
    cfg = jd.write_dask_config({"scheduler-address": "tls://a:1"})
    for p in [*map(__import__("pathlib").Path, paths.values()), cfg]:
        assert mode(p) == 0o600
    assert yaml.safe_load(cfg.read_text()) == {"scheduler-address": "tls://a:1"}
    jd.remove()
    assert not jd.path.exists()


def test_unwritable_parent_gives_a_clear_error(tmp_path):
    with pytest.raises(MPILXError, match="cannot create the job directory.*--job-directory"):
        JobDirectory(str(tmp_path / "missing"), "1")


def test_tls_material_never_printed():
    tls = new_job_tls()
    assert "PRIVATE" not in repr(tls)
    sec = security_for(tls)
    assert sec.require_encryption is True
    assert "PRIVATE KEY" not in repr(sec)
