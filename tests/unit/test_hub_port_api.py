"""The port API: a port and nothing else, and only while the server is starting."""

from types import SimpleNamespace

import pytest
from jupyterhub import apihandlers
from tornado import web

from dask_mpi_lx_hooks.port_api import ROUTE, PortOnlyAPIHandler, checked_port


def spawner(starting: bool) -> SimpleNamespace:
    return SimpleNamespace(_start_pending=starting, port=0)


def test_a_port_is_accepted_while_the_server_starts():
    assert checked_port(spawner(starting=True), {"port": 8888}) == 8888


@pytest.mark.parametrize("body", [
    {"port": 8888, "exec_prefix": "id"}, {"batch_cancel_cmd": "id"}, [8888], None, "8888",
    {"port": "8888"}, {"port": True}, {"port": 0}, {"port": 70000}, {"port": 1.5},
])
def test_anything_but_a_port_is_a_400_even_while_starting(body):
    with pytest.raises(web.HTTPError) as e:
        checked_port(spawner(starting=True), body)
    assert e.value.status_code == 400


def test_a_port_once_the_server_runs_or_stopped_is_a_409():
    with pytest.raises(web.HTTPError) as e:
        checked_port(spawner(starting=False), {"port": 8888})
    assert e.value.status_code == 409 and "not starting" in e.value.log_message
    with pytest.raises(web.HTTPError) as e:  # no spawn state at all
        checked_port(SimpleNamespace(port=0), {"port": 8888})
    assert e.value.status_code == 409


def test_a_bad_body_is_refused_before_the_state_is_looked_at():
    with pytest.raises(web.HTTPError) as e:
        checked_port(spawner(starting=False), {"port": "1"})
    assert e.value.status_code == 400


def test_ours_is_the_only_handler_on_the_route():
    import dask_mpi_lx_hooks.spawner  # noqa: F401  (installs it)

    handlers = [h for r, h, *_ in apihandlers.default_handlers if r == ROUTE]
    assert handlers == [PortOnlyAPIHandler]
