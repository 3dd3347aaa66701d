"""A planned move drains the connections first (smb.server.drain): the WRITE a
client is sending when the move starts gets its reply before the cut, and the
client is left with nothing half sent: it runs out of credits, or, still
holding some, it is finished (its next WRITE read in full and dropped, the
server's side shut) and closes by itself before any cut."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hanode.lab import Lab, wait_for

pytestmark = pytest.mark.cluster

USER, PASSWORD = "alice", "Secret-11"
CHUNK = 1 << 20
# The client's link, slowed so that a 1 MiB WRITE is on the wire for ~50 ms:
# whenever the move starts, a WRITE is partly sent.
RATE = "400mbit"
CLIENT = Path(__file__).with_name("write_loop.py")


def start_writer(lab: Lab) -> subprocess.Popen:
    """tests/cluster/write_loop.py in the client namespace, once its file is open."""
    client = subprocess.Popen(
        ["ip", "netns", "exec", lab.client_ns, sys.executable,
         "-u", str(CLIENT), lab.vip_ip, str(lab.port), USER, "drained.bin", str(CHUNK)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(PASSWORD + "\n")
    client.stdin.close()
    assert client.stdout.readline().strip() == "ready"
    return client


def lines_until_not_ok(proc: subprocess.Popen, timeout: float) -> list[str]:
    """The client's lines from now to its first one that is not ``ok``."""
    assert proc.stdout is not None
    seen: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline().strip()
        if not line:
            break
        seen.append(line)
        if not line.startswith("ok"):
            return seen
    raise AssertionError(f"the client never stopped: {seen[-5:]}")


def test_switchover_answers_the_write_in_flight_and_cuts_nothing_half_sent(tmp_path):
    with Lab(3, workdir=tmp_path, workers=1) as lab:
        lab.add_user(USER, PASSWORD)
        leader = lab.start_agents()
        wait_for(lambda: len(lab.read_etcd("nodes/")) == 3, 10, "three node records")
        subprocess.run(["tc", "-n", lab.client_ns, "qdisc", "add", "dev", "eth0", "root",
                        "tbf", "rate", RATE, "burst", "32kb", "latency", "200ms"], check=True)
        client = start_writer(lab)
        try:
            assert client.stdout is not None
            # Writing steadily before the move.
            assert [client.stdout.readline().split()[:2] for _ in range(5)] == \
                [["ok", str(n)] for n in range(1, 6)]
            target = next(n for n in lab.nodes if n != leader)
            proc = lab.cli("switchover", "--to", target)
            assert proc.returncode == 0, proc.stderr
            after = lines_until_not_ok(client, 20)
            log = lab.nodes[leader].log.read_text()
            moved = [line for line in log.splitlines() if "VIP released" in line]
            why = "\n".join(after[-6:] + moved)
            # Drained in time, no WRITE half sent into the cut: either the client
            # ran out of credits (nothing went on the wire) and the cut found it
            # idle, or its WRITE went out whole (its send returned) and it then
            # saw the end of the stream while waiting for the reply, closing its
            # side before the cut (so the move dropped no socket).
            assert "1 connections drained (0 not quiet in time)" in moved[-1], why
            if not after[-1].startswith("no-credit"):
                assert after[-1].startswith("broken SMBConnectionClosed"), why
                assert "0 connections dropped" in moved[-1], why
        finally:
            client.kill()
            client.wait()


def test_the_last_node_stopping_resets_its_idle_client_itself(tmp_path):
    """SIGTERM of a lone leader: no successor claims, so nobody would tickle its
    client, which sends nothing and would wait on a dead connection for minutes.
    The old leader resets it itself once the claim bound has passed (without
    that, the client sees no reset at all)."""
    with Lab(1, workdir=tmp_path) as lab:
        lab.start_agents()
        client = lab.hold_connection()
        try:
            stopped = time.monotonic()
            # (How soon the agent exits is not the point; under load it can take seconds.)
            assert lab.terminate_agent("n1").wait(timeout=20) == 0
            assert client.wait_reset(3) - stopped < 2.0
            assert not lab.holds_vip("n1")
            log = lab.nodes["n1"].log.read_text()
            assert "no node claimed it within" in log and "1 clients reset from here" in log, \
                log[-2000:]
        finally:
            client.close()

