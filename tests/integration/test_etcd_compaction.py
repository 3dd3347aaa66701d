"""The embedded etcd compacts its history: durable handles write and delete a
record per open, and an etcd whose history fills its space quota refuses
every write (the leader key's included)."""

import os
import subprocess
import time

from hanode import embedded_etcd


def _etcdctl(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["etcdctl", "--endpoints", url, *args], capture_output=True,
                          text=True, timeout=10, env={**os.environ, "ETCDCTL_API": "3"})


def test_embedded_etcd_compacts_old_revisions(tmp_path):
    url = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    peer = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    proc = embedded_etcd.start(tmp_path / "etcd", url, peer, compaction_retention="1s")
    try:
        assert _etcdctl(url, "put", "k", "first").returncode == 0
        first = _etcdctl(url, "get", "k", "-w", "fields").stdout
        revision = next(line.split(":")[1].strip() for line in first.splitlines()
                        if line.startswith('"ModRevision"'))
        assert _etcdctl(url, "get", "k", "--rev", revision).stdout.splitlines()[-1] == "first"
        deadline = time.monotonic() + 15
        compacted = False
        while not compacted and time.monotonic() < deadline:
            assert _etcdctl(url, "put", "k", "later").returncode == 0
            old = _etcdctl(url, "get", "k", "--rev", revision)
            compacted = "compacted" in old.stderr
            time.sleep(0.5)
        assert compacted, "etcd kept revision {revision} of a key rewritten since"
    finally:
        embedded_etcd.stop(proc)
