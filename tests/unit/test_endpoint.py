"""Where the scheduler, its dashboard and the workers listen, for each layout of ranks."""

from __future__ import annotations

import pytest

from dask_mpi_lx.config import resolve
from dask_mpi_lx.runtime import addresses
from dask_mpi_lx.runtime.addresses import NoJobAddressError, job_ip
from dask_mpi_lx.runtime.coordinator import default_dashboard_address, plan_endpoint
from dask_mpi_lx.runtime.roles import plan_roles

SPREAD = ["n1", "n1", "n1", "n2", "n2", "n2"]


@pytest.fixture
def fake_route(monkeypatch):
    """The address the kernel would pick towards a peer host (no network needed)."""
    routes = {"n1": "10.9.0.12", "n2": "10.9.0.11"}
    monkeypatch.setattr("distributed.utils.get_ip", lambda host, port=80: routes[host])
    monkeypatch.setattr("dask_mpi_lx.runtime.coordinator._free_port", lambda host: 40000)
    return routes


def test_single_host_binds_loopback():
    plan = plan_roles(["a"] * 4)
    assert job_ip(plan, 0) == "127.0.0.1"
    ep = plan_endpoint(plan, resolve(wait_for_workers=False))
    assert ep.listen_host == "127.0.0.1"
    assert ep.contact.startswith("tls://127.0.0.1:")
    assert ep.dashboard[0] == "127.0.0.1"


def test_multi_host_binds_the_job_address_never_every_interface(fake_route):
    plan = plan_roles(SPREAD)
    ep = plan_endpoint(plan, resolve(wait_for_workers=False))
    assert ep.listen_host == "10.9.0.11"          # n1's address towards n2
    assert ep.contact == "tls://10.9.0.11:40000"
    assert ep.dashboard[0] == "127.0.0.1"
    assert job_ip(plan, 4) == "10.9.0.12"          # a worker on n2 binds n2's address


def test_behind_a_hub_the_dashboard_is_a_socket_on_every_layout(fake_route):
    for hosts in (["a"] * 4, SPREAD):
        ep = plan_endpoint(plan_roles(hosts), resolve(wait_for_workers=True),
                           private_dashboard=True, job_id="7")
        assert ep.dashboard_socket and "dask-mpi-lx-7-dashboard-" in ep.dashboard_socket
        assert ep.listen_host is not None


def test_rank0_alone_gets_no_dashboard_rather_than_an_open_one(fake_route):
    plan = plan_roles(["n1", "n2", "n2", "n2"])
    settings = resolve()
    assert default_dashboard_address(plan, settings) is None
    ep = plan_endpoint(plan, settings, private_dashboard=True)
    assert ep.listen_host is None and ep.dashboard is None and ep.dashboard_socket is None


def test_an_explicit_interface_wins(monkeypatch):
    monkeypatch.setattr("distributed.utils.get_ip_interface", lambda name: {"ib0": "10.1.1.1"}[name])
    assert job_ip(plan_roles(["a"] * 3), 0, "ib0") == "10.1.1.1"


def test_no_route_to_the_other_host_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("distributed.utils.get_ip", lambda host, port=80: "127.0.0.1")
    with pytest.raises(NoJobAddressError, match="no address of n1 reaches n2.*interface"):
        job_ip(plan_roles(SPREAD), 0)


def test_unknown_interface_is_a_clear_error():
    with pytest.raises(NoJobAddressError, match="interface 'nosuch0'"):
        job_ip(plan_roles(["a"] * 3), 0, "nosuch0")


def test_worker_http_is_loopback_and_health_only():
    assert addresses.WORKER_HTTP_ADDRESS.startswith("127.0.0.1:")
    assert addresses.WORKER_HTTP_ROUTES == ["distributed.http.health"]
