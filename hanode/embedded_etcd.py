"""Start a single-member etcd as a child process.

Used for trial clusters (``cluster.etcd = []``), by ``hanode demo`` and by the
tests.  Production clusters run etcd under systemd (deploy/ansible).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence


# Every durable open writes a record and deletes it: at a thousand opens a
# second etcd's history grows by about a megabyte a second, and an etcd past
# its space quota (2 GiB) refuses every write, leader key included.  hanode
# never reads old revisions, so a minute of history is plenty.
COMPACTION_RETENTION = "1m"


class EtcdStartError(Exception):
    """etcd could not be started or did not become healthy."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start(data_dir: str | Path, client_url: str, peer_url: str, *, name: str = "hanode",
          wrap: list[str] | None = None, log_path: str | Path | None = None,
          timeout: float = 15.0, extra_args: Sequence[str] = (),
          health_url: str | None = None,
          compaction_retention: str = COMPACTION_RETENTION) -> subprocess.Popen:
    """Start etcd and wait until it answers /health; ``wrap`` prefixes the command
    (e.g. ``["ip", "netns", "exec", "ns1"]``).

    ``extra_args`` go to etcd as they are (TLS and auth flags, say); when they
    make the client URL demand a certificate, ``health_url`` names a plain
    one to ask instead (etcd's ``--listen-metrics-urls`` serves /health)."""
    binary = shutil.which("etcd")
    if binary is None:
        raise EtcdStartError("etcd is not installed (Debian package etcd-server)")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    cmd = [
        *(wrap or []), binary, "--name", name, "--data-dir", str(data_dir),
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"{name}={peer_url}",
        "--heartbeat-interval", "50", "--election-timeout", "500",
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", compaction_retention,
        "--logger", "zap", "--log-level", "error", *extra_args,
    ]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if log_path:
            log.close()  # the child keeps its own descriptor
    if wrap:
        return proc  # the caller checks health from inside the namespace
    try:
        wait_healthy(health_url or client_url, timeout, proc)
    except EtcdStartError:
        stop(proc)
        raise
    return proc


def wait_healthy(client_url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EtcdStartError(f"etcd exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(client_url + "/health", timeout=0.5) as r:
                if b'"health":"true"' in r.read():
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise EtcdStartError(f"etcd at {client_url} not healthy after {timeout:.0f}s")


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
