"""sd_notify: the datagrams a real AF_UNIX socket receives, path and abstract."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from hanode import sdnotify


@pytest.fixture(params=["path", "abstract"])
def listener(request, tmp_path):
    """A datagram socket playing systemd; yields (NOTIFY_SOCKET value, socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(2)
    if request.param == "path":
        name = str(tmp_path / "notify")
        sock.bind(name)
    else:
        name = f"@hanode-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name[1:])
    try:
        yield name, sock
    finally:
        sock.close()


def fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


def test_ready_status_watchdog_stopping_arrive(listener):
    name, sock = listener
    n = sdnotify.Notifier.from_environ({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "4000000"})
    try:
        assert n.enabled and n.interval == 2.0
        assert n.ready("joined etcd")
        assert fields(sock.recv(4096)) == {
            "READY": "1", "MAINPID": str(os.getpid()), "STATUS": "joined etcd"}
        assert n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert n.status("leader, term 7")
        assert sock.recv(4096) == b"STATUS=leader, term 7"
        assert n.stopping("releasing VIP")
        assert fields(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "releasing VIP"}
    finally:
        n.close()


def test_watchdog_is_rate_limited_to_the_interval(listener):
    name, sock = listener
    now = [100.0]
    n = sdnotify.Notifier(name, interval=5.0, clock=lambda: now[0])
    try:
        sent = []
        for _ in range(12):  # a main loop turning every second for 12 s
            sent.append(n.watchdog())
            now[0] += 1.0
        assert sent == [True, False, False, False, False, True,
                        False, False, False, False, True, False]
        sock.settimeout(0.2)
        assert [sock.recv(64) for _ in range(3)] == [b"WATCHDOG=1"] * 3
        with pytest.raises(socket.timeout):
            sock.recv(64)
    finally:
        n.close()


def test_without_socket_everything_is_a_quiet_no_op():
    n = sdnotify.Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled
    assert n.interval is None
    assert not n.ready() and not n.watchdog() and not n.status("x") and not n.stopping()


def test_vanished_socket_is_reported_not_raised(tmp_path):
    n = sdnotify.Notifier(str(tmp_path / "gone"), interval=1.0)
    try:
        assert n.ready() is False
        assert n.watchdog() is False
    finally:
        n.close()


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "junk"}, None),
    ({"WATCHDOG_USEC": "10000000"}, 5.0),
    ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "4242"}, 5.0),
    ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),
])
def test_watchdog_interval(env, expected):
    assert sdnotify.watchdog_interval(env, pid=4242) == expected


def test_socket_address_and_message():
    assert sdnotify.socket_address("@x") == "\0x"
    assert sdnotify.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert sdnotify.message(READY="1", STATUS="ok") == b"READY=1\nSTATUS=ok"
    with pytest.raises(ValueError):
        sdnotify.message(STATUS="two\nlines")
