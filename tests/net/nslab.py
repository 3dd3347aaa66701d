"""A throwaway network lab in namespaces for the real-kernel tests of hanode.net.

Every name carries a random tag (other helpers run tests on this machine at
the same time), every link lives inside a namespace the lab created, and
teardown kills the lab's processes and deletes its namespaces (which takes
their links with them), also when the test failed.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import time
from pathlib import Path

TCP_PEER = str(Path(__file__).with_name("tcp_peer.py"))

# Runs one hanode.net function inside a namespace and reports its result as JSON.
_CALL = """
import json, sys
from hanode.config import VipConfig
from {module} import {name} as fn
try:
    print(json.dumps({{"ok": fn(*eval(sys.argv[1]))}}))
except Exception as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
"""


class RemoteError(Exception):
    """A hanode.net function raised inside a namespace; args: (type name, message)."""


class Peer:
    """A tcp_peer.py process in a namespace, read line by line with a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self._buffer = b""

    def line(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"peer said nothing within {timeout} s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise EOFError(f"peer exited with status {self.proc.wait()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().strip()


class Lab:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self._links = 0

    def run(self, *cmd: str) -> str:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
        return result.stdout

    def netns(self, role: str) -> str:
        name = f"hn{self.tag}{role}"
        self.run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns_a: str, ns_b: str) -> tuple[str, str]:
        """A veth pair with one end in each namespace, both up; returns the two names."""
        self._links += 1
        a, b = f"hn{self.tag}{self._links}a", f"hn{self.tag}{self._links}b"
        self.run("ip", "link", "add", a, "netns", ns_a, "type", "veth",
                 "peer", "name", b, "netns", ns_b)
        self.run("ip", "-n", ns_a, "link", "set", a, "up")
        self.run("ip", "-n", ns_b, "link", "set", b, "up")
        return a, b

    def bridged(self, roles: list[str]) -> dict[str, tuple[str, str]]:
        """Namespaces on one bridge (itself in a hub namespace): role -> (namespace, interface)."""
        hub = self.netns("h")
        self.run("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        self.run("ip", "-n", hub, "link", "set", "br0", "up")
        nodes = {}
        for role in roles:
            ns = self.netns(role)
            inside, port = self.veth(ns, hub)
            self.run("ip", "-n", hub, "link", "set", port, "master", "br0")
            nodes[role] = (ns, inside)
        return nodes

    def addr(self, ns: str, iface: str, address: str) -> None:
        extra = ["nodad"] if ":" in address else []
        self.run("ip", "-n", ns, "addr", "add", address, "dev", iface, *extra)

    def mac(self, ns: str, iface: str) -> str:
        return json.loads(self.run("ip", "-n", ns, "-j", "link", "show", iface))[0]["address"]

    def neigh(self, ns: str, ip: str) -> str | None:
        """The MAC a namespace's neighbour table holds for ip, or None."""
        entries = json.loads(self.run("ip", "-n", ns, "-j", "neigh", "show", ip) or "[]")
        return entries[0].get("lladdr") if entries else None

    def addresses(self, ns: str, iface: str) -> list[dict]:
        return json.loads(self.run("ip", "-n", ns, "-j", "addr", "show", iface))[0]["addr_info"]

    def call(self, ns: str, function: str, *args):
        """Run a hanode.net function in ns; its return value, or RemoteError if it raised."""
        module, name = function.rsplit(".", 1)
        out = self.run("ip", "netns", "exec", ns, sys.executable, "-c",
                       _CALL.format(module=module, name=name), repr(args))
        result = json.loads(out)
        if "error" in result:
            raise RemoteError(result["error"], result["message"])
        return result["ok"]

    def peer(self, ns: str, *args: str) -> Peer:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, TCP_PEER, *args],
                                stdout=subprocess.PIPE)
        self.procs.append(proc)
        return Peer(proc)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
