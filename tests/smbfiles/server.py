"""Run ``hanode smb`` for a test: a real etcd user, a share in a tmp dir,
workers on a free loopback port.  Shared by the file-side end-to-end tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from hanode import embedded_etcd

USER = "alice"
PASSWORD = "Secret-pw1"


@dataclass
class SmbServer:
    port: int
    share: Path
    share_name: str
    config: Path
    proc: subprocess.Popen
    log: Path

    @property
    def unc(self) -> str:
        return f"//127.0.0.1/{self.share_name}"


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hanode smb exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"hanode smb did not listen on {port}: {log.read_text()[-2000:]}")


def start(etcd_url: str, base: Path, *, workers: int = 2, share_extra: str = "",
          extra_shares: str = "") -> SmbServer:
    from hanode.store import Store
    from smb.wire.md4 import nt_hash

    cluster = f"t{uuid.uuid4().hex[:8]}"
    store = Store([etcd_url], cluster)
    try:
        store.put(store.user_key(USER), {"nt_hash": nt_hash(PASSWORD).hex()})
    finally:
        store.close()
    share = base / "share"
    share.mkdir()
    port = embedded_etcd.free_port()
    config = base / "hanode.toml"
    config.write_text(f"""
[cluster]
name = "{cluster}"
etcd = ["{etcd_url}"]

[node]
name = "n1"
state_dir = "{base / 'state'}"

[smb]
listen = "127.0.0.1"
port = {port}
workers = {workers}

[[share]]
name = "data"
path = "{share}"
{share_extra}
{extra_shares}
""")
    log = base / "hanode-smb.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hanode.cli", "smb", "--config", str(config)],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(port, proc, log)
    except BaseException:
        stop(proc)
        raise
    return SmbServer(port, share, "data", config, proc, log)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
