"""On a continuously available share an acknowledged create or rename is not
lost with the node: the worker syncs the parent directory (fsync) before the
answer; on a plain share it does not (the file system commits names on its own
schedule).  Observed where it happens, in the worker's system calls (strace -y
names each fsync'ed descriptor's path): hanode.volatile_fs, the lab's
stand-in for a node's page cache, passes names to the backing directory at
once, so a hard kill through it cannot show a lost name."""

from __future__ import annotations

import re
import subprocess
import time
import uuid

import pytest
import smbclient

import durable_client as dc
import harness


@pytest.fixture
def two_shares(etcd_server, tmp_path):
    """One worker; share ``test`` plain, share ``ca`` continuously available."""
    (tmp_path / "ca").mkdir()
    with harness.running_hanode(
            etcd_server.url, tmp_path / "hanode", workers=1,
            extra_shares=f'[[share]]\nname = "ca"\npath = "{tmp_path / "ca"}"\n'
                         "continuous_availability = true\n") as target:
        yield target, tmp_path / "ca"


def _traced_fsyncs(pid: int, act) -> list[str]:
    """The paths the worker fsync'ed while act() ran."""
    out = subprocess.Popen(["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync",
                            "-p", str(pid)], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # attached to every thread
        act()
        time.sleep(0.5)
    finally:
        out.terminate()
        _, err = out.communicate(timeout=10)
    return re.findall(r"fsync\(\d+<([^>]*)>\)", err)


def test_create_and_rename_sync_the_directory_on_a_ca_share_only(two_shares):
    t, ca_dir = two_shares
    m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    pid = dc.serving_pid(t.port, m.local_port())
    cache: dict = {}  # a private connection cache
    smbclient.register_session(t.host, username=t.user, password=t.password, port=t.port,
                               connection_cache=cache)
    plain_dir = t.share

    def on(share: str, name: str) -> str:
        return rf"\\{t.host}\{share}\{name}"

    def act() -> None:
        for share in ("ca", t.share_name):
            with smbclient.open_file(on(share, "new.bin"), mode="wb", port=t.port,
                                    connection_cache=cache) as f:
                f.write(b"x")
            smbclient.rename(on(share, "new.bin"), on(share, "moved.bin"), port=t.port,
                             connection_cache=cache)

    try:
        synced = _traced_fsyncs(pid, act)
    finally:
        m.conn.disconnect()
        smbclient.reset_connection_cache(connection_cache=cache)
    assert (ca_dir / "moved.bin").read_bytes() == b"x"
    # The CA share's directory: once for the create, once for the rename.
    assert synced.count(str(ca_dir)) == 2, synced
    assert str(plain_dir) not in synced, synced
