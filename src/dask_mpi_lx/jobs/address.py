"""``mpi-lx://<cluster id>``: a job cluster's address by its id, for distributed's comms.

A job cluster has keys of its own, kept in its owner's private directory; a bare
``tls://node:port`` works only where the dask config holds those keys, which no kernel's
does. Under this scheme the connector finds the cluster's directory (in the connecting
user's ``mpi-lx.jobs.directory``), takes the scheduler's current address and the cluster's
keys from it, and connects over TLS with them. So ``Client("mpi-lx://1a2b3c4d")``, as the
Dask tab's ``<>`` inserts it, works in any process of the owner, and in nobody else's: the
directory, and so the keys, are the owner's alone.

Registered with distributed as a comm backend (entry point ``distributed.comm.backends``).
"""

from __future__ import annotations

from typing import Any

from distributed.comm.addressing import parse_address
from distributed.comm.core import Connector, FatalCommClosedError
from distributed.comm.registry import Backend, get_backend

from ..config import setting
from ..exceptions import MPILXError
from ..runtime.tls import security_for

SCHEME = "mpi-lx"


def cluster_address(cluster_id: str) -> str:
    return f"{SCHEME}://{cluster_id}"


def resolve(cluster_id: str) -> tuple[str, dict[str, Any]]:
    """The scheduler's address (``tls://host:port``) and the connection arguments that carry
    the cluster's keys; `MPILXError` when this user has no such running cluster."""
    from .cluster import existing_directory

    directory = existing_directory(str(setting("jobs.directory")), cluster_id)
    contact = directory.read_contact()
    if contact is None:
        raise MPILXError(f"job cluster {cluster_id} has no scheduler yet (its first job has "
                         "not started) or it has ended")
    return contact.address, security_for(directory.load_tls()).get_connection_args("client")


def _scheduler_loc(cluster_id: str) -> tuple[Any, str]:
    """The scheduler's backend and scheme-less address."""
    try:
        address, _ = resolve(cluster_id)
    except MPILXError as e:
        raise ValueError(str(e)) from None
    scheme, loc = parse_address(address)
    return get_backend(scheme), loc


class ClusterConnector(Connector):
    async def connect(self, address: str, deserialize: bool = True, **_: Any) -> Any:
        """The caller's own TLS settings are not used: the cluster's keys are."""
        try:
            target, connection_args = resolve(address)
        except MPILXError as e:  # no retrying can help: say so at once
            raise FatalCommClosedError(str(e)) from None
        scheme, loc = parse_address(target)
        connector = get_backend(scheme).get_connector()
        return await connector.connect(loc, deserialize=deserialize, **connection_args)


class ClusterBackend(Backend):
    """``mpi-lx://<id>``: connect-only; nothing listens on such an address."""

    def get_connector(self) -> Connector:
        return ClusterConnector()

    def get_listener(self, loc: str, handle_comm: Any, deserialize: bool,
                     **connection_args: Any) -> Any:
        raise ValueError(f"{SCHEME}:// names a job cluster to connect to; nothing listens on it")

    def get_address_host(self, loc: str) -> str:
        backend, target = _scheduler_loc(loc)
        return backend.get_address_host(target)

    def get_address_host_port(self, loc: str) -> tuple[str, int]:
        backend, target = _scheduler_loc(loc)
        return backend.get_address_host_port(target)

    def resolve_address(self, loc: str) -> str:
        return loc

    def get_local_address_for(self, loc: str) -> str:
        backend, target = _scheduler_loc(loc)
        return backend.get_local_address_for(target)
