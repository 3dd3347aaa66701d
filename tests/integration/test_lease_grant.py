"""The TTL a real etcd grants: 1 s with hanode's etcd timing, raised to 2 s with etcd's defaults."""

from __future__ import annotations

import pytest

from hanode import embedded_etcd
from hanode.leadership import granted_note
from hanode.store import Store


def test_tuned_etcd_grants_a_one_second_lease(store):
    """The embedded etcd runs --heartbeat-interval 50 --election-timeout 500."""
    lease, granted = store.grant_lease_ttl(1)
    try:
        assert granted == 1
        assert granted_note(1, granted) is None
        assert store.keepalive(lease) == 1
    finally:
        store.revoke_lease(lease)


@pytest.fixture
def default_timing_etcd(tmp_path):
    """An etcd with its own default timing (heartbeat 100 ms, election 1000 ms):
    etcd takes the last of a repeated flag."""
    client = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    peer = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    proc = embedded_etcd.start(tmp_path / "etcd", client, peer, log_path=tmp_path / "etcd.log",
                               extra_args=["--heartbeat-interval", "100",
                                           "--election-timeout", "1000"])
    store = Store([client], "granted")
    try:
        yield store
    finally:
        store.close()
        embedded_etcd.stop(proc)


def test_untuned_etcd_raises_one_second_to_two_and_the_agent_says_so(default_timing_etcd):
    lease, granted = default_timing_etcd.grant_lease_ttl(1)
    try:
        assert granted == 2
        note = granted_note(1, granted)
        assert note is not None
        assert "etcd granted a 2 s lease where cluster.lease_ttl asks for 1 s" in note
        assert "--election-timeout 500" in note
        # A TTL at or above etcd's minimum is granted as asked.
        lease3, granted3 = default_timing_etcd.grant_lease_ttl(3)
        default_timing_etcd.revoke_lease(lease3)
        assert granted3 == 3
    finally:
        default_timing_etcd.revoke_lease(lease)
