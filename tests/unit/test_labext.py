import dask.config
from tornado.web import Application

from dask_mpi_lx import labext


def test_outside_a_job_there_is_no_dashboard():
    assert labext.job_dashboard() is None


def test_job_dashboard_from_the_job_config():
    with dask.config.set({"mpi-lx.job.dashboard": ["127.0.0.1", 8787]}):
        assert labext.job_dashboard() == ("127.0.0.1", 8787)


def test_default_url_is_set_in_the_shared_overrides_unless_the_site_set_one():
    shared = {}
    site = {labext.PLUGIN: {"defaultURL": "/site/choice"}}
    handler = type("SettingsHandler", (), {})
    app = Application()
    app.add_handlers(".*$", [("/a", handler, {"overrides": shared}),
                             ("/b", handler, {"overrides": shared}),
                             ("/c", handler, {"overrides": site})])
    assert labext.set_default_dashboard_url(app, "/user/a/proxy/dask-mpi-lx/dashboard/status") == 2
    assert shared == {labext.PLUGIN: {"defaultURL": "/user/a/proxy/dask-mpi-lx/dashboard/status"}}
    assert site[labext.PLUGIN]["defaultURL"] == "/site/choice"
