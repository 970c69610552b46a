import dask.config
import pytest
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


class _FakeManager:
    """dask-labextension 7's manager, as far as `keep_job_card` uses it."""

    def __init__(self, cluster):
        self._clusters = {"c1": cluster}
        self.started: list[tuple[str, dict]] = []

    async def close_cluster(self, cluster_id):
        self._clusters.pop(cluster_id)
        return {"id": cluster_id}

    async def start_cluster(self, cluster_id="", configuration=None):
        self.started.append((cluster_id, configuration))
        self._clusters[cluster_id] = "re-attached"


@pytest.mark.parametrize("parks", [True, False])
def test_shutdown_on_the_job_card_lists_the_parked_job_cluster_again(parks):
    import asyncio
    from types import SimpleNamespace

    import dask

    from dask_mpi_lx.cluster.labcard import keep_job_card

    manager = _FakeManager(SimpleNamespace(parks_on_close=parks))
    assert keep_job_card(manager) and keep_job_card(manager)  # installed once
    initial = [{"name": "MPI job 7: 4 workers"}]
    with dask.config.set({"labextension.initial": initial}):
        model = asyncio.run(manager.close_cluster("c1"))
    assert model == {"id": "c1"}
    if parks:  # the job's card: same id, same name, listed again (its workers parked)
        assert manager.started == [("c1", initial[0])] and "c1" in manager._clusters
    else:  # a cluster from NEW: closed and gone
        assert manager.started == [] and "c1" not in manager._clusters
