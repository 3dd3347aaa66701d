"""Fixtures shared by every test layer: a real etcd on loopback."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from hanode import embedded_etcd


@dataclass
class EtcdServer:
    url: str

    def store(self, cluster: str | None = None):
        from hanode.store import Store
        return Store([self.url], cluster or f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    """One real etcd for the whole session; tests isolate by cluster name."""
    data = tmp_path_factory.mktemp("etcd")
    client = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    peer = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    proc = embedded_etcd.start(data, client, peer, log_path=data / "etcd.log")
    try:
        yield EtcdServer(url=client)
    finally:
        embedded_etcd.stop(proc)


@pytest.fixture
def store(etcd_server):
    """A Store on a fresh cluster prefix of the shared etcd."""
    s = etcd_server.store()
    try:
        yield s
    finally:
        s.delete_prefix(s.prefix)
        s.close()
