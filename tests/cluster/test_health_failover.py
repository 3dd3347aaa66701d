"""Health-aware failover with real agents, real SMB workers and real etcd in namespaces.

Every scenario polls the VIP on all nodes every 20 ms (via the Watch of the
failover tests) and fails on any sample with two holders.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hanode.lab import Lab, wait_for
from tests.cluster.test_failover import Watch

pytestmark = pytest.mark.cluster

USER, PASSWORD = "alice", "Secret-11"
# The defaults (worker interval 1 s, timeout 1 s, fall 2) detect a hung worker
# within fall x interval + timeout.
WORKER_DETECTION = 2 * 1.0 + 1.0
HOLD_DOWN = 1


def health_config(extra: str = "") -> str:
    return f"\n[health]\nhold_down = {HOLD_DOWN}\n{extra}"


def records(lab: Lab) -> dict[str, dict]:
    return {k.split("/", 1)[1]: v for k, v in lab.read_etcd("nodes/").items()}


def healthy(lab: Lab, name: str) -> bool:
    rec = records(lab).get(name) or {}
    return bool((rec.get("health") or {}).get("healthy"))


def smb_ls(lab: Lab, timeout: float = 3.0) -> bool:
    """One real listing of \\\\VIP\\test from the client namespace."""
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", lab.client_ns, "smbclient", f"//{lab.vip_ip}/test",
             "-U", f"{USER}%{PASSWORD}", "-t", str(int(timeout)), "-c", "ls"],
            capture_output=True, text=True, timeout=timeout + 1)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def smb_put(lab: Lab, local: Path, name: str, timeout: float = 3.0) -> bool:
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", lab.client_ns, "smbclient", f"//{lab.vip_ip}/test",
             "-U", f"{USER}%{PASSWORD}", "-t", str(int(timeout)), "-c", f"put {local} {name}"],
            capture_output=True, text=True, timeout=timeout + 1)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


COPY_SIZE = 8 << 20


def start_copy(lab: Lab, name: str, size: int, seconds: float,
               *options: str) -> subprocess.Popen:
    """The demo's durable-handle client copying `size` bytes to the VIP over `seconds`
    (options: more of its command line, e.g. --persistent)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.client_ns, sys.executable, "-u", "-m", "hanode.democlient",
         "--server", lab.vip_ip, "--user", USER, "--name", name, "--size", str(size),
         "--chunk", str(256 << 10), "--pace", str(size / seconds), *options],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None
    proc.stdin.write(PASSWORD + "\n")
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() must not touch it
    return proc


def workers_of(lab: Lab, name: str) -> list[int]:
    agent = lab.nodes[name].agent
    assert agent is not None
    return [c.pid for c in psutil.Process(agent.pid).children(recursive=True)
            if "smb.worker" in " ".join(c.cmdline())]


def start(lab: Lab) -> tuple[str, str]:
    """Agents up, the user added; (leader, a standby) once both report healthy."""
    lab.add_user(USER, PASSWORD)
    leader = lab.start_agents()
    other = next(n for n in lab.nodes if n != leader)
    wait_for(lambda: healthy(lab, leader) and healthy(lab, other), 20, "both nodes healthy",
             interval=0.1)
    assert smb_ls(lab)
    return leader, other


def test_hung_workers_move_the_vip_and_get_restarted(tmp_path):
    with Lab(2, workdir=tmp_path, workers=2, extra_config=health_config()) as lab:
        leader, other = start(lab)
        time.sleep(HOLD_DOWN)
        hung = workers_of(lab, leader)
        assert len(hung) == 2
        copy = start_copy(lab, "copy.bin", COPY_SIZE, seconds=8)
        wait_for(lambda: (tmp_path / "share" / "copy.bin").exists(), 10, "the copy under way")
        time.sleep(1.0)
        watch = Watch(lab)
        for pid in hung:
            os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        moved = watch.until(lambda h: h == [other], WORKER_DETECTION + 5)
        served = wait_for(lambda: smb_ls(lab, 2.0) and time.monotonic(), 10,
                          "a listing through the VIP", interval=0.0)
        assert served - stopped <= WORKER_DETECTION + 1.0, (moved - stopped, served - stopped)

        # The copy through a durable handle carried on across the move, byte for byte.
        out, _ = copy.communicate(timeout=90)
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        done = next((e for e in events if e["ev"] == "done"), None)
        assert done is not None, events[-3:]
        assert any(e["ev"] == "reclaimed" for e in events), [e["ev"] for e in events]
        stored = hashlib.sha256((tmp_path / "share" / "copy.bin").read_bytes()).hexdigest()
        assert done["bytes"] == COPY_SIZE and done["sha256"] == stored

        # The supervisor killed the stopped workers and started new ones; the old
        # leader recovers as a standby and does not take the VIP back.
        wait_for(lambda: (pids := workers_of(lab, leader)) and len(pids) == 2
                 and not set(pids) & set(hung), 15, "workers restarted", interval=0.1)
        wait_for(lambda: healthy(lab, leader), 20, "the old leader healthy again", interval=0.1)
        watch.hold(2.0)
        assert lab.holders() == [other]
        log = lab.nodes[leader].log.read_text()
        assert "does not answer its health probe; killing it" in log
        assert "handing over to" in log
        status = lab.status("--json")
        rep = json.loads(status.stdout)
        assert status.returncode == 0, rep["verdict"]
        by_name = {n["name"]: n for n in rep["nodes"]}
        assert by_name[leader]["health"]["healthy"] is True
        names = [c["name"] for c in by_name[leader]["health"]["checks"]]
        assert names == ["worker 0", "worker 1", "marker test", "storage test", "link eth0"]


def test_crash_looping_worker_moves_the_vip_and_node_comes_back_as_standby(tmp_path):
    with Lab(2, workdir=tmp_path, workers=1, extra_config=health_config()) as lab:
        leader, other = start(lab)
        time.sleep(HOLD_DOWN)
        # A bad config deployed to the leader: every worker started from now on
        # exits at once; the running one is killed to start the loop.
        config = lab.nodes[leader].config
        good = config.read_text()
        config.write_text(good + "\n[bogus]\n")
        watch = Watch(lab)
        for pid in workers_of(lab, leader):
            os.kill(pid, signal.SIGKILL)
        watch.until(lambda h: h == [other], WORKER_DETECTION + 5)
        rec = records(lab)[leader]
        assert rec["health"]["healthy"] is False and rec["state"] == "standby"
        assert smb_ls(lab)
        # Fixed: the node serves again and stays a standby.
        config.write_text(good)
        wait_for(lambda: healthy(lab, leader), 30, "the node healthy again", interval=0.1)
        watch.hold(1.0)
        assert lab.holders() == [other]
        assert "exited with status 2" in lab.nodes[leader].log.read_text()


def test_storage_gone_moves_the_vip_and_nothing_lands_outside_shared_storage(tmp_path):
    with Lab(2, workdir=tmp_path, workers=1, share_mounts="bind",
             extra_config=health_config()) as lab:
        leader, other = start(lab)
        watch = Watch(lab)
        local = lab.unmount_share(leader)
        assert not any(local.iterdir())  # an empty local directory now
        watch.until(lambda h: h == [other], 5)
        payload = tmp_path / "payload.bin"
        payload.write_bytes(os.urandom(100_000))
        assert wait_for(lambda: smb_put(lab, payload, "after.bin"), 10, "a put through the VIP")
        assert (lab.share_dir / "after.bin").read_bytes() == payload.read_bytes()
        # Nothing but the health probe's hidden directory on the node's local disk.
        assert {p.name for p in local.iterdir()} <= {".hanode"}
        assert not (local / ".hanode" / "share-id").exists()
        rec = records(lab)[leader]
        failing = [c for c in rec["health"]["checks"] if not c["ok"]]
        assert [c["name"] for c in failing] == ["marker test"]
        assert failing[0]["detail"] == "storage marker missing (not mounted?)"
        status = lab.status()
        assert status.returncode == 1
        assert (f"{leader}: unhealthy: marker test: storage marker missing (not mounted?)"
                in status.stdout.splitlines()[-1])
        # It stays out: never a campaign from the wrong storage.
        watch.hold(2.0)
        assert lab.holders() == [other]


def test_hung_storage_makes_the_node_unhealthy_without_wedging_the_agent(tmp_path):
    with Lab(2, workdir=tmp_path, workers=1, share_mounts="bindfs",
             extra_config=health_config()) as lab:
        leader, other = start(lab)
        watch = Watch(lab)
        lab.hang_share(leader)
        hung = time.monotonic()
        watch.until(lambda h: h == [other], 8)
        # The agent still turns: its record keeps being rewritten with the reason.
        rec = wait_for(lambda: (r := records(lab)[leader]) and any(
            c["name"] == "storage test" and not c["ok"] and "hung" in c["detail"]
            for c in r["health"]["checks"]) and r, 5, "storage hung in the record", interval=0.1)
        assert rec["state"] == "standby"
        assert time.monotonic() - hung < 10
        assert smb_ls(lab)


def test_cold_start_never_refuses_a_connection_to_the_vip(tmp_path):
    with Lab(2, workdir=tmp_path, workers=2) as lab:
        lab.add_user(USER, PASSWORD)
        poller = subprocess.Popen(
            ["ip", "netns", "exec", lab.client_ns, "python3", "-u", "-c", POLLER,
             lab.vip_ip, "445", "25"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            for name in lab.nodes:
                lab.start_agent(name)
            out, _ = poller.communicate(timeout=40)
        finally:
            poller.kill()
        counts = json.loads(out.strip().splitlines()[-1])
        assert counts["accepted"] > 100, counts
        assert counts["refused"] == 0, counts
        assert smb_ls(lab)


# Connects to IP:PORT every 20 ms for N seconds; counts accepted and refused.
POLLER = r"""
import json, socket, sys, time
ip, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
counts = {"accepted": 0, "refused": 0, "other": 0}
end = time.monotonic() + seconds
while time.monotonic() < end:
    t = time.monotonic()
    s = socket.socket()
    s.settimeout(0.2)
    try:
        s.connect((ip, port))
        counts["accepted"] += 1
    except ConnectionRefusedError:
        counts["refused"] += 1
    except OSError:
        counts["other"] += 1
    finally:
        s.close()
    time.sleep(max(0.0, t + 0.02 - time.monotonic()))
print(json.dumps(counts))
"""


def test_public_link_down_moves_the_vip(tmp_path):
    with Lab(2, workdir=tmp_path, workers=1, public_net=True,
             extra_config=health_config()) as lab:
        leader, other = start(lab)
        watch = Watch(lab)
        lab.public_link(leader, up=False)
        cut = time.monotonic()
        moved = watch.until(lambda h: h == [other], 5)
        assert wait_for(lambda: smb_ls(lab, 2.0), 10, "a listing through the VIP")
        rec = records(lab)[leader]
        failing = [(c["name"], c["detail"]) for c in rec["health"]["checks"] if not c["ok"]]
        assert failing == [("link eth1", "no carrier")]
        assert moved - cut < 5


# Fails every other second while this node holds the VIP: the check flaps
# wherever the VIP goes, and passes on the other nodes.
FLAPPY = ("! ip -o addr show dev eth0 | grep -q ' {vip}/' "
          "|| [ $(( $(date +%s) % 2 )) -eq 0 ]")


def test_flapping_check_moves_the_vip_at_most_once_per_hold_down(tmp_path):
    hold_down, seconds = 4.0, 24.0
    with Lab(2, workdir=tmp_path, workers=0) as lab:
        extra = (f"\n[health]\nhold_down = {hold_down}\n\n[[health.check]]\nname = \"flappy\"\n"
                 f"command = [\"/bin/sh\", \"-c\", \"{FLAPPY.format(vip=lab.vip_ip)}\"]\n"
                 f"interval = 0.5\ntimeout = 0.5\nfall = 1\n")
        for node in lab.nodes.values():
            node.config.write_text(lab.node_config(node) + extra)
        lab.start_agents()
        watch = Watch(lab)
        watch.hold(seconds)
        last, moves = None, []  # when a new node first held the VIP
        for t, holders in watch.samples:
            if holders and holders[0] != last:
                if last is not None:
                    moves.append(t)
                last = holders[0]
        assert len(moves) >= 2, "the flapping check never moved the VIP"
        assert len(moves) <= seconds / hold_down + 1, moves
        gaps = [b - a for a, b in zip(moves, moves[1:])]
        # Each claim starts a hold-down; the move after it comes no sooner.
        assert all(g >= hold_down for g in gaps), gaps
