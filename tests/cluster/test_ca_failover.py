"""No acknowledged write is lost with its node, on a continuously available share.

Three real agents with SMB workers in namespaces, each node's share path on a
hanode.volatile_fs layer of its own over one backing directory: what a node
wrote without syncing lives in its layer's memory and dies with the node, as
a machine's page cache does.  The demo client copies a file through the VIP
with a durable handle (batch oplock), re-sending after the reconnect only the
writes that were in flight, as clients do; the serving node is killed hard
(link down, SIGKILL of its agent, workers and layer) mid-copy.

- CA share: every WRITE was written through before its answer, so the file is
  byte-identical on the shared storage after the copy finished on the new node.
- Plain share: what the dead node had acknowledged but not synced is gone; the
  copy "succeeds" (every write was acknowledged) and the file has zeros where
  the dead node's writes were.  This is what a plain share promises.
- CA share, a persistent handle with no oplock and no lease (what Windows asks
  on such a share): reclaimed with DH2C on the new node, byte-identical.
- A byte-range lock and share mode held through a persistent handle keep
  refusing another client on the new node, from its first request on, until
  the owner reclaims.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hanode.democlient import chunk_at
from hanode.lab import Lab, wait_for
from tests.cluster.test_failover import Watch
from tests.cluster.test_health_failover import PASSWORD, USER, start, start_copy

pytestmark = pytest.mark.cluster

SIZE = 4 << 20
CHUNK = 256 << 10
SEED = 1  # democlient's default: the stream is chunk_at(SEED, offset, length)
# The layer is Python, one request at a time: on a loaded 2-core machine the
# storage probe may wait behind the copy's writes longer than the default 1 s,
# and a node that turns unhealthy hands the VIP over in the middle of the copy.
PATIENT_STORAGE_CHECK = "\n[health.storage]\ninterval = 3\ntimeout = 3\nfall = 2\n"


LOCK_CLIENT = Path(__file__).with_name("lock_client.py")
FILE_NOT_AVAILABLE = 0xC0000467
SHARING_VIOLATION = 0xC0000043
LOCK_NOT_GRANTED = 0xC0000055
FILE_LOCK_CONFLICT = 0xC0000054
# What the persistent open refuses another client: a read/write open sharing only
# reads, a LOCK and a READ of its locked range; the open is refused as for any
# open while its handle is connected, as 3.3.5.9.7 says while it is not, and
# then (3.3.5.9) a 3.x reader its share mode allows is refused as well.
CONNECTED = {"open": SHARING_VIOLATION, "share_reader": 0, "lock": LOCK_NOT_GRANTED,
             "read": FILE_LOCK_CONFLICT}
DISCONNECTED = {**CONNECTED, "open": FILE_NOT_AVAILABLE, "share_reader": FILE_NOT_AVAILABLE}
UNGUARDED = {"open": 0, "share_reader": 0, "read": 0, "lock": 0}  # nothing refused


def expected() -> bytes:
    return b"".join(chunk_at(SEED, off, min(CHUNK, SIZE - off)) for off in range(0, SIZE, CHUNK))


def copy_across_a_hard_kill(lab: Lab, *options: str) -> tuple[str, str, list[dict]]:
    """Copy SIZE bytes through the VIP, kill the serving node once a quarter was
    acknowledged; (killed node, new leader, the client's events).  options: the
    demo client's (--persistent)."""
    start(lab)
    copy = start_copy(lab, "copy.bin", SIZE, 4, *options)
    events: list[dict] = []
    try:
        assert copy.stdout is not None
        for line in copy.stdout:
            events.append(json.loads(line))
            if events[-1]["ev"] == "progress" and events[-1]["acked"] >= SIZE // 4:
                break
        assert events and events[-1]["ev"] == "progress", events[-3:]
        # The node serving the copy now (not necessarily the first leader: on a
        # loaded machine a health check may have moved the VIP meanwhile).
        leader = lab.sole_holder()
        assert leader is not None
        watch = Watch(lab, [n for n in lab.nodes if n != leader])
        lab.kill_node(leader)
        # Agent, worker and the node's volatile_fs layer (it runs in the node's
        # network namespace): all gone, what the layer held with them.
        wait_for(lambda: not lab.pids(lab.nodes[leader].ns), 5, "the node's processes to die")
        watch.until(lambda h: len(h) == 1, 15)
        out, _ = copy.communicate(timeout=90)
    finally:
        copy.kill()
    events += [json.loads(line) for line in out.splitlines() if line.strip()]
    return leader, watch.samples[-1][1][0], events


@pytest.mark.parametrize("ca", [True, False], ids=["ca", "plain"])
def test_copy_across_a_hard_kill(tmp_path, ca):
    extra = ("continuous_availability = true\n" if ca else "") + PATIENT_STORAGE_CHECK
    with Lab(3, workdir=tmp_path, workers=1, share_mounts="volatile",
             extra_config=extra) as lab:
        killed, new, events = copy_across_a_hard_kill(lab)
        assert new != killed
        done = next((e for e in events if e["ev"] == "done"), None)
        assert done is not None, events[-3:]
        # The client came back on the new node: through its durable handle, or by
        # opening the file again when its DH2C was refused (hanode refuses it while
        # the dead worker's liveness key lives, which may end a renewal period after
        # the leader key).  Either way it re-sends only the writes still in flight.
        came_back = [e["ev"] for e in events if e["ev"] in ("lost", "reclaimed", "reopened")]
        assert came_back[:1] == ["lost"] and len(came_back) >= 2, \
            [e for e in events if e["ev"] != "progress"]
        want = expected()
        assert done["bytes"] == SIZE and done["sha256"] == hashlib.sha256(want).hexdigest()
        # What the clients see now: the file through the node that serves it.
        seen = (lab.share_path(lab.nodes[new]) / "copy.bin").read_bytes()
        acked_before = max(e["acked"] for e in events
                           if e["ev"] == "progress" and e["t"] < next(
                               x["t"] for x in events if x["ev"] == "lost"))
        if ca:
            assert seen == want
            # And on the shared storage itself: nothing waits in the new node's memory.
            assert (lab.share_dir / "copy.bin").read_bytes() == want
        else:
            assert len(seen) == SIZE and seen != want
            lost = [off for off in range(0, SIZE, CHUNK) if seen[off:off + CHUNK] != want[off:off + CHUNK]]
            # Lost: the writes the client saw acknowledged before the kill (a prefix of
            # the file, at least what its last progress report counted), zeros now;
            # those it re-sent after the reconnect are there.
            assert lost == list(range(0, len(lost) * CHUNK, CHUNK)), lost
            assert acked_before <= len(lost) * CHUNK < SIZE
            assert seen[:len(lost) * CHUNK] == bytes(len(lost) * CHUNK)


def test_persistent_copy_across_a_hard_kill(tmp_path):
    """The open Windows makes on a CA share: a persistent handle with no oplock and
    no lease (nothing a durable handle would need), reclaimed with DH2C on the new
    node after the hard kill, the writes in flight re-sent; byte-identical."""
    extra = "continuous_availability = true\n" + PATIENT_STORAGE_CHECK
    with Lab(3, workdir=tmp_path, workers=1, share_mounts="volatile",
             extra_config=extra) as lab:
        killed, new, events = copy_across_a_hard_kill(lab, "--persistent")
        assert new != killed
        opened = next(e for e in events if e["ev"] == "open")
        assert (opened["durable"], opened["persistent"], opened["oplock"]) == (True, True, False)
        done = next((e for e in events if e["ev"] == "done"), None)
        assert done is not None, events[-3:]
        # Every loss (one, unless a health check also moved the VIP on a loaded
        # machine) reclaimed at the first reconnect: never reopened.
        came_back = [e["ev"] for e in events if e["ev"] in ("lost", "reclaimed", "reopened")]
        assert came_back and came_back == ["lost", "reclaimed"] * (len(came_back) // 2), \
            [e for e in events if e["ev"] != "progress"]
        want = expected()
        assert done["bytes"] == SIZE and done["sha256"] == hashlib.sha256(want).hexdigest()
        assert (lab.share_path(lab.nodes[new]) / "copy.bin").read_bytes() == want
        assert (lab.share_dir / "copy.bin").read_bytes() == want


class LockClients:
    """tests/cluster/lock_client.py in the client namespace: one command, one answer."""

    def __init__(self, lab: Lab, name: str):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.client_ns, sys.executable, "-u", str(LOCK_CLIENT),
             lab.vip_ip, USER, "test", name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.send(PASSWORD)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, command: str) -> dict:
        self.send(command)
        assert self.proc.stdout is not None
        return json.loads(self.proc.stdout.readline())

    def probe(self, timeout: float) -> dict:
        """The other client's attempt, retried while no node answers it yet."""
        deadline = time.monotonic() + timeout
        while "error" in (answer := self.ask("probe")) and time.monotonic() < deadline:
            time.sleep(0.1)
        return answer

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_persistent_lock_holds_across_a_hard_kill(tmp_path):
    """A byte-range lock and share mode held through a persistent handle keep
    refusing another client on the node that took over, from its first request
    on (its workers loaded the dead node's opens before the VIP came: see
    test_persistent_share_mode_refuses_from_the_first_request_after_a_hard_kill),
    until the owner reclaims; after the reclaim the owner still holds the lock;
    only its CLOSE lets the other client have it."""
    with Lab(3, workdir=tmp_path, workers=1,
             extra_config="continuous_availability = true\n") as lab:
        start(lab)
        clients = LockClients(lab, "locked.bin")
        try:
            assert clients.ask("hold") == {"persistent": 2}  # SMB2_DHANDLE_FLAG_PERSISTENT
            assert clients.probe(5) == CONNECTED  # on the live node, as ever
            leader = lab.sole_holder()
            assert leader is not None
            watch = Watch(lab, [n for n in lab.nodes if n != leader])
            lab.kill_node(leader)
            moved = watch.until(lambda h: len(h) == 1, 15)
            # Probes back to back from the first the new node answers, for longer
            # than the dead worker's liveness key can live (2 s) and a scavenger round.
            seen: list[tuple[float, dict]] = []
            while not seen or time.monotonic() - moved < 3:
                seen.append((time.monotonic() - moved, clients.probe(10)))
            assert all(r == DISCONNECTED for _, r in seen), seen
            assert clients.ask("reclaim") == {"reclaim": 0, "data": True}
            assert clients.probe(5) == CONNECTED  # the reclaimed open's lock
            assert clients.ask("release") == {"closed": True}
            assert clients.probe(5) == UNGUARDED
        finally:
            clients.close()


def test_persistent_share_mode_refuses_from_the_first_request_after_a_hard_kill(tmp_path):
    """No window after the takeover: another client that opens the file with a
    conflicting share mode from the first moment the new node answers on the
    VIP, many times back to back on either of its workers, is refused every
    time (FILE_NOT_AVAILABLE) until the owner reclaims.  The new leader claims
    the VIP only once its workers have loaded the dead node's kept opens."""
    with Lab(3, workdir=tmp_path, workers=2,
             extra_config="continuous_availability = true\n") as lab:
        start(lab)
        clients = LockClients(lab, "held.bin")
        try:
            assert clients.ask("hold") == {"persistent": 2}
            leader = lab.sole_holder()
            assert leader is not None
            lab.kill_node(leader)
            # Rounds on fresh connections (each lands on one of the two workers),
            # the first from the moment the VIP answers again.
            rounds = [clients.ask("rapid") for _ in range(4)]
            statuses = [s for r in rounds for s in r["opens"]]
            granted = sum(1 for s in statuses if s == 0)
            assert granted == 0 and set(statuses) == {FILE_NOT_AVAILABLE}, \
                f"{granted} of {len(statuses)} conflicting opens granted: {rounds}"
            assert clients.ask("reclaim") == {"reclaim": 0, "data": True}
            assert clients.probe(5) == CONNECTED
            assert clients.ask("release") == {"closed": True}
            assert clients.ask("rapid")["opens"] == [0] * 20  # nothing holds it now
        finally:
            clients.close()
