"""Store keeps one etcd client per endpoint, also when threads ask at once
(every trio.to_thread call of the agent and the workers goes through it)."""

from __future__ import annotations

import threading
import time

import etcd3

from hanode.store import Store


class _Client:
    made: list["_Client"] = []

    def __init__(self) -> None:
        self.closed = False
        _Client.made.append(self)

    def close(self) -> None:
        self.closed = True


def test_threads_asking_at_once_share_one_client_and_leak_none(monkeypatch):
    def slow_client(**kwargs):
        time.sleep(0.05)  # long enough for the other thread to ask meanwhile
        return _Client()

    _Client.made = []
    monkeypatch.setattr(etcd3, "client", slow_client)
    store = Store(["http://127.0.0.1:1"], "t")
    got: list[object] = []
    start = threading.Barrier(4)

    def ask() -> None:
        start.wait()
        got.append(store._client("http://127.0.0.1:1"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in got}) == 1
    # Every client made and not kept was closed (no channel left behind).
    assert all(c.closed for c in _Client.made if c is not got[0])
    store.close()
    assert got[0].closed
