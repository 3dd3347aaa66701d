"""``hanode user``: NT hashes in etcd, never the password; workers see changes."""

from __future__ import annotations

import subprocess
import time

import harness
from hanode.embedded_etcd import free_port
from smb.wire.md4 import nt_hash


def _hanode(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(harness.hanode_command() + list(args), input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_add_list_del(store, etcd_server):
    where = ["--etcd", etcd_server.url, "--cluster", store.cluster]
    secret = "S3cret-Ünïcode"
    added = _hanode("user", "add", "Bob", "--password-stdin", *where, stdin=secret + "\n")
    assert added.returncode == 0, added.stderr
    assert secret not in added.stdout + added.stderr
    entry = store.get(store.user_key("bob"))
    assert entry.value == {"nt_hash": nt_hash(secret).hex()}

    listed = _hanode("user", "list", *where)
    assert listed.returncode == 0 and listed.stdout.split() == ["bob"]

    assert _hanode("user", "del", "bob", *where).returncode == 0
    assert store.get(store.user_key("bob")) is None
    gone = _hanode("user", "del", "bob", *where)
    assert gone.returncode == 2 and "no user" in gone.stderr


def test_refusals_are_one_line_exit_2(store, etcd_server):
    where = ["--etcd", etcd_server.url, "--cluster", store.cluster]
    empty = _hanode("user", "add", "carol", "--password-stdin", *where, stdin="\n")
    assert empty.returncode == 2 and "empty password" in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1
    assert store.get(store.user_key("carol")) is None
    bad = _hanode("user", "add", "../x", "--password-stdin", *where, stdin="pw\n")
    assert bad.returncode == 2 and "not a valid user name" in bad.stderr


def test_etcd_down_is_one_line(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    result = _hanode("user", "list", "--etcd", down, "--cluster", "x")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_password_change_and_delete_reach_the_workers(hanode_server):
    assert harness.smbclient(hanode_server, "ls", "-m", "SMB3").returncode == 0
    changed = harness.add_user(hanode_server.config, hanode_server.user, "Another-pw2")
    assert changed.returncode == 0
    time.sleep(2.5)  # the workers' user cache lives 2 s
    old = harness.smbclient(hanode_server, "ls", "-m", "SMB3")
    assert "NT_STATUS_LOGON_FAILURE" in old.stdout + old.stderr
    assert harness.smbclient(hanode_server, "ls", "-m", "SMB3",
                             password="Another-pw2").returncode == 0
    deleted = _hanode("user", "del", hanode_server.user, "--config", str(hanode_server.config))
    assert deleted.returncode == 0
    time.sleep(2.5)
    after = harness.smbclient(hanode_server, "ls", "-m", "SMB3", password="Another-pw2")
    assert "NT_STATUS_LOGON_FAILURE" in after.stdout + after.stderr
    assert "Another-pw2" not in hanode_server.log_text()
