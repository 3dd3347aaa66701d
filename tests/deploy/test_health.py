"""The agent's reporter: observations in, datagrams on a real socket and gauges out."""

from __future__ import annotations

import socket

import trio

from prometheus_client.parser import text_string_to_metric_families

from hanode import health, metrics, sdnotify


def values(m: metrics.Metrics) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{label}}}" if label else "")] = s.value
    return out


def received(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_ready_once_joined_status_on_change_watchdog_every_turn(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    clock = [0.0]
    notifier = sdnotify.Notifier(str(tmp_path / "notify"), interval=1.0, clock=lambda: clock[0])
    m = metrics.Metrics()
    r = health.Reporter("n1", m, notifier, ["10.0.0.50"])
    try:
        r.observe("starting", None, joined=False, held=set())
        assert received(sock) == [b"WATCHDOG=1"]  # alive, but not ready
        clock[0] += 1
        r.observe("standby", None, joined=True, held=set())
        ready, status, pet = received(sock)
        assert ready.startswith(b"READY=1\nMAINPID=") and ready.endswith(
            b"\nSTATUS=n1: joined etcd, standby")
        assert status == b"STATUS=n1: standby" and pet == b"WATCHDOG=1"
        assert values(m)["hanode_leader"] == 0

        clock[0] += 0.5  # within the watchdog interval: no pet
        r.observe("leader", 7, joined=True, held={"10.0.0.50"}, announced=2, tickled=3)
        assert received(sock) == [b"STATUS=n1: leader, term 7, VIP 10.0.0.50"]
        v = values(m)
        assert v["hanode_leader"] == 1 and v["hanode_leader_term"] == 7
        assert v["hanode_takeovers_total"] == 1 and v["hanode_vip_held{address=10.0.0.50}"] == 1

        clock[0] += 0.6
        r.observe("leader", 7, joined=True, held={"10.0.0.50"}, announced=6, tickled=9)
        assert received(sock) == [b"WATCHDOG=1"]  # nothing changed: no STATUS
        v = values(m)
        assert v["hanode_garps_sent_total"] == 6 and v["hanode_tickles_sent_total"] == 9
        r.observe("fenced", 7, joined=False, held=set())
        r.observe("leader", 9, joined=True, held={"10.0.0.50"})
        assert received(sock) == [b"STATUS=n1: fenced", b"STATUS=n1: leader, term 9, VIP 10.0.0.50"]
        v = values(m)
        assert v["hanode_takeovers_total"] == 2 and v["hanode_leader_term"] == 9
    finally:
        notifier.close()
        sock.close()


async def test_durable_handles_are_counted_in_etcd(store):
    for pid in (1, 2, 3):
        store.put(store.durable_key(pid), {"path": f"f{pid}"})
    store.put(store.key("durablex"), 1)  # a neighbour prefix does not count
    m = metrics.Metrics()
    with trio.move_on_after(0.5):
        await health.durable_loop(m, store)
    assert values(m)["hanode_durable_handles"] == 3
