"""A cluster on one machine: network namespaces on a private bridge.

Used by the cluster tests, ``bench/failover.py`` and the demo.  Everything
lives in namespaces this lab creates, named ``hn<6 hex>-<role>`` so that labs
of concurrent runs never collide; the bridge sits in a namespace of its own,
so the host's network is never touched.  ``down()`` kills every process in
the lab's namespaces and deletes them, also after a failure.

    <tag>-sw    bridge br0, one veth port per member
    <tag>-etcd  etcd at 10.77.0.2:2379
    <tag>-n1..  one agent each (eth0 10.77.0.11, .12, ...); with workers=0 a
                stand-in TCP listener on the service port instead of SMB
                workers, otherwise the agent's SMB workers serving share
                ``test`` from one directory all nodes share
    <tag>-cl    the client, 10.77.0.100
    (each member also has fd77::<host>/64; the VIP is 10.77.0.50/24, or
    fd77::50/64 for an IPv6 lab)

Run as a module it also provides the two tiny helper processes:
``python -m hanode.lab listen PORT`` accepts TCP connections and keeps them
open; ``python -m hanode.lab hold IP PORT`` opens one idle connection and
prints ``connected <t> <ip> <port>`` and then ``reset <t>`` or ``closed <t>`` (t is
CLOCK_MONOTONIC, comparable across processes).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from hanode import embedded_etcd

SUBNET = "10.77.0"
PREFIX = 24
SUBNET6 = "fd77::"  # every member also gets SUBNET6 + its host number, /64
PREFIX6 = 64
ETCD_IP = f"{SUBNET}.2"
# With public_net: a second bridge for the clients and the VIP (eth1 everywhere),
# so that the cluster network to etcd (eth0) and the public link fail apart.
PUBLIC_SUBNET = "10.79.0"
CLIENT_IP = f"{SUBNET}.100"
ETCD_PORT = 2379

T = TypeVar("T")


class LabError(Exception):
    """A lab step failed; the message says which command and why."""


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll check() until it returns something truthy; LabError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def start_volatile_fs(backing: str | os.PathLike, mountpoint: str | os.PathLike,
                      log: str | os.PathLike, wrap: Sequence[str] = (),
                      timeout: float = 10.0) -> subprocess.Popen:
    """Mount a hanode.volatile_fs layer over backing at mountpoint (an empty
    directory) and return its process once the mount is up; its output goes to
    log; wrap prefixes the command (``nsenter --net=...``).  LabError if it
    does not mount."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([*wrap, sys.executable, "-m", "hanode.volatile_fs",
                                 str(backing), str(mountpoint)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_volatile_fs(proc, mountpoint)
            tail = open(log, errors="replace").read().strip()[-300:]
            raise LabError(f"volatile_fs on {mountpoint} did not mount: {tail}")
        time.sleep(0.02)
    return proc


def stop_volatile_fs(proc: subprocess.Popen, mountpoint: str | os.PathLike) -> None:
    """Kill the layer (what it held is lost) and detach its mount; safe to repeat."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if os.path.ismount(mountpoint) or _dead_mount(mountpoint):
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def _dead_mount(mountpoint: str | os.PathLike) -> bool:
    """A FUSE mount whose daemon died answers ENOTCONN (ismount then says False)."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


@dataclass
class Node:
    name: str
    ns: str
    ip: str
    config: Path
    log: Path
    agent: subprocess.Popen | None = None
    listener: subprocess.Popen | None = None


class Lab:
    """Namespaces, bridge, etcd and agents; a context manager that always cleans up."""

    def __init__(self, nodes: int = 2, *, workdir: str | Path | None = None,
                 lease_ttl: int = 2, fence_margin: float | None = None, port: int = 445,
                 cluster: str = "lab", ipv6: bool = False, workers: int = 0,
                 extra_config: str = "", share_mounts: str | None = None, smb_config: str = "",
                 public_net: bool = False):
        if not 1 <= nodes <= 9:
            raise ValueError("a lab has 1 to 9 nodes")
        self.tag = "hn" + secrets.token_hex(3)
        self.own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.lease_ttl = lease_ttl
        # None: the config's default for lease_ttl (default_fence_margin).
        self.fence_margin = fence_margin
        self.port = port
        self.cluster = cluster
        self.workers = workers
        # More TOML for every node's config (a [health] table, say).
        self.extra_config = extra_config
        self.smb_config = smb_config  # more keys of the nodes' [smb] table
        # None: every node serves share_dir itself; "bind", "bindfs" or "volatile":
        # each node sees it through a mount of its own (<workdir>/<node>-share),
        # which a test can take away (unmount) or hang (stop the FUSE daemon);
        # "volatile" (hanode.volatile_fs) holds what the node wrote without
        # syncing in the node's own memory, lost when the node is killed.
        if share_mounts not in (None, "bind", "bindfs", "volatile"):
            raise ValueError("share_mounts is None, 'bind', 'bindfs' or 'volatile'")
        self.share_mounts = share_mounts
        self._mounted: list[Path] = []
        self._fuse: dict[str, subprocess.Popen] = {}
        self.share_dir = self.workdir / "share"
        self.switch_ns = f"{self.tag}-sw"
        self.etcd_ns = f"{self.tag}-etcd"
        self.client_ns = f"{self.tag}-cl"
        self.etcd_url = f"http://{ETCD_IP}:{ETCD_PORT}"
        # The VIP: 10.77.0.50/24, or fd77::50/64 with ipv6 (the client then uses IPv6 too).
        if public_net and ipv6:
            raise ValueError("a lab with a public network is IPv4 only")
        self.public_net = public_net
        self.vip_ip = (f"{SUBNET6}50" if ipv6 else
                       f"{PUBLIC_SUBNET if public_net else SUBNET}.50")
        self.vip = f"{self.vip_ip}/{PREFIX6 if ipv6 else PREFIX}"
        self.vip_interface = "eth1" if public_net else "eth0"
        self.nodes = {
            f"n{i}": Node(name=f"n{i}", ns=f"{self.tag}-n{i}", ip=f"{SUBNET}.{10 + i}",
                          config=self.workdir / f"n{i}.toml", log=self.workdir / f"n{i}.log")
            for i in range(1, nodes + 1)
        }
        self._namespaces: list[str] = []
        self._etcd: subprocess.Popen | None = None

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> "Lab":
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        """Namespaces, the bridge, etcd, and (without workers) a stand-in listener per node;
        no agents yet."""
        self._add_ns(self.switch_ns)
        _run("ip", "-n", self.switch_ns, "link", "add", "br0", "type", "bridge",
             "forward_delay", "0")
        _run("ip", "-n", self.switch_ns, "link", "set", "br0", "up")
        self._add_member(self.etcd_ns, "etcd", ETCD_IP)
        self._add_member(self.client_ns, "cl", CLIENT_IP)
        for node in self.nodes.values():
            self._add_member(node.ns, node.name, node.ip)
            node.config.write_text(self.node_config(node))
        if self.public_net:
            _run("ip", "-n", self.switch_ns, "link", "add", "br1", "type", "bridge",
                 "forward_delay", "0")
            _run("ip", "-n", self.switch_ns, "link", "set", "br1", "up")
            self._add_public(self.client_ns, "pcl", f"{PUBLIC_SUBNET}.100")
            for node in self.nodes.values():
                self._add_public(node.ns, f"p{node.name}",
                                 f"{PUBLIC_SUBNET}.{node.ip.rsplit('.', 1)[1]}")
        self.share_dir.mkdir(parents=True, exist_ok=True)
        for node in self.nodes.values():
            self._mount_share(node)
        self._start_etcd()
        self.init_share()
        for node in self.nodes.values():
            self._start_listener(node)

    def init_share(self) -> None:
        """``hanode share init test``: the marker the nodes' health checks look for."""
        node = next(iter(self.nodes.values()))
        proc = subprocess.run(["ip", "netns", "exec", node.ns, sys.executable, "-m",
                               "hanode.cli", "share", "init", "test", "--config",
                               str(node.config)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"hanode share init test: {proc.stderr.strip()}")

    def down(self) -> None:
        for ns in reversed(self._namespaces):
            self._kill_all(ns)
        self._unmount_shares()
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()
        procs = [self._etcd] + [p for n in self.nodes.values() for p in (n.agent, n.listener)]
        for proc in procs:
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def namespaces(self) -> list[str]:
        """The namespaces this lab created and has not deleted yet."""
        return list(self._namespaces)

    def _add_ns(self, ns: str) -> None:
        _run("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")

    def _add_member(self, ns: str, port_name: str, ip: str) -> None:
        """A namespace with eth0 at ip, cabled to the bridge."""
        self._add_ns(ns)
        _run("ip", "-n", self.switch_ns, "link", "add", port_name, "type", "veth",
             "peer", "name", "eth0", "netns", ns)
        _run("ip", "-n", self.switch_ns, "link", "set", port_name, "master", "br0", "up")
        _run("ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX}", "dev", "eth0")
        # No duplicate address detection: the address is usable at once.
        _run("ip", "-n", ns, "addr", "add", f"{SUBNET6}{ip.rsplit('.', 1)[1]}/{PREFIX6}",
             "dev", "eth0", "nodad")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")

    def _add_public(self, ns: str, port_name: str, ip: str) -> None:
        """eth1 at ip in namespace ns, cabled to the public bridge."""
        _run("ip", "-n", self.switch_ns, "link", "add", port_name, "type", "veth",
             "peer", "name", "eth1", "netns", ns)
        _run("ip", "-n", self.switch_ns, "link", "set", port_name, "master", "br1", "up")
        _run("ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX}", "dev", "eth1")
        _run("ip", "-n", ns, "link", "set", "eth1", "up")

    def public_link(self, name: str, up: bool) -> None:
        """Pull (or put back) the cable of a node's public interface at the switch:
        the node's eth1 loses its carrier, its cluster network stays."""
        _run("ip", "-n", self.switch_ns, "link", "set", f"p{name}", "up" if up else "down")

    def _start_etcd(self) -> None:
        data = self.workdir / "etcd"
        self._etcd = embedded_etcd.start(
            data, self.etcd_url, f"http://{ETCD_IP}:2380", name="lab",
            wrap=["ip", "netns", "exec", self.etcd_ns], log_path=self.workdir / "etcd.log")
        check = (f"from hanode import embedded_etcd; "
                 f"embedded_etcd.wait_healthy({self.etcd_url!r}, 15)")
        proc = subprocess.run(["ip", "netns", "exec", self.client_ns, sys.executable, "-c", check],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"etcd in {self.etcd_ns} did not become healthy: "
                           f"{proc.stderr.strip().splitlines()[-1:]}")

    def pids(self, ns: str) -> list[int]:
        """The processes running in namespace ns."""
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def _kill_all(self, ns: str) -> None:
        for pid in self.pids(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- processes ----------------------------------------------------------------

    def node_config(self, node: Node, etcd: list[str] | None = None) -> str:
        """The node's TOML; etcd=[] asks for the agent's embedded trial etcd."""
        urls = [self.etcd_url] if etcd is None else etcd
        return f"""\
[cluster]
name = "{self.cluster}"
etcd = {json.dumps(urls)}
lease_ttl = {self.lease_ttl}
{"" if self.fence_margin is None else f"fence_margin = {self.fence_margin}"}

[node]
name = "{node.name}"
state_dir = "{self.workdir / node.name}"

[[vip]]
address = "{self.vip}"
interface = "{self.vip_interface}"

[smb]
port = {self.port}
workers = {self.workers}
{self.smb_config}

[[share]]
name = "test"
path = "{self.share_path(node)}"
{self.extra_config}
"""

    def share_path(self, node: Node) -> Path:
        """Where the node sees the shared directory."""
        return self.share_dir if self.share_mounts is None else self.workdir / f"{node.name}-share"

    def _mount_share(self, node: Node) -> None:
        if self.share_mounts is None:
            return
        path = self.share_path(node)
        path.mkdir(exist_ok=True)
        if self.share_mounts == "bind":
            _run("mount", "--bind", str(self.share_dir), str(path))
        elif self.share_mounts == "volatile":
            # In the node's network namespace (its mounts stay the host's), so that
            # kill_node kills it with the node's other processes.
            self._fuse[node.name] = start_volatile_fs(
                self.share_dir, path, self.workdir / f"{node.name}-volatile.log",
                wrap=["nsenter", f"--net=/run/netns/{node.ns}"])
        else:
            # -f: the daemon stays our child, so a test can stop it by pid.
            self._fuse[node.name] = subprocess.Popen(
                ["bindfs", "-f", "--no-allow-other", str(self.share_dir), str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: os.path.ismount(path), 10, f"bindfs on {path}")
        self._mounted.append(path)

    def unmount_share(self, name: str) -> Path:
        """Take the shared storage away from one node: its share path is now an empty
        local directory (lazily, as files the workers hold open keep the old mount)."""
        node = self.nodes[name]
        path = self.share_path(node)
        if node.agent is not None:
            # `ip netns exec` gave the agent a mount namespace of its own, which
            # need not see unmounts made outside it (a private root).
            _run("nsenter", f"--mount=/proc/{node.agent.pid}/ns/mnt", "umount", "-l", str(path))
        _run("umount", "-l", str(path))
        self._mounted.remove(path)
        return path

    def remount_share(self, name: str) -> None:
        """Give a node whose share was unmounted its storage back (in its agent's mount
        namespace, where its workers look)."""
        node = self.nodes[name]
        assert node.agent is not None and self.share_mounts == "bind"
        path = self.share_path(node)
        _run("nsenter", f"--mount=/proc/{node.agent.pid}/ns/mnt", "mount", "--bind",
             str(self.share_dir), str(path))
        _run("mount", "--bind", str(self.share_dir), str(path))
        self._mounted.append(path)

    def hang_share(self, name: str) -> None:
        """Stop the node's FUSE daemon: every access to its share path now blocks."""
        self._fuse[name].send_signal(signal.SIGSTOP)

    def resume_share(self, name: str) -> None:
        """Let the node's FUSE daemon run again after hang_share()."""
        self._fuse[name].send_signal(signal.SIGCONT)

    def _unmount_shares(self) -> None:
        for proc in self._fuse.values():
            proc.send_signal(signal.SIGCONT)
        for path in reversed(self._mounted):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        self._mounted.clear()
        for proc in self._fuse.values():
            proc.kill()
            proc.wait()
        self._fuse.clear()

    def popen(self, ns: str, *python_args: str, log: Path | None = None) -> subprocess.Popen:
        """This Python in namespace ns; output to log, or readable from .stdout without one."""
        cmd = ["ip", "netns", "exec", ns, sys.executable, *python_args]
        if log is None:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, text=True)
        with open(log, "ab") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

    def _start_listener(self, node: Node) -> None:
        if self.workers:
            return
        node.listener = self.popen(node.ns, "-m", "hanode.lab", "listen", str(self.port),
                                   log=self.workdir / f"{node.name}-listener.log")

    def start_agent(self, name: str) -> None:
        node = self.nodes[name]
        node.agent = self.popen(node.ns, "-m", "hanode.cli", "agent", "--config",
                                str(node.config), log=node.log)

    def start_agents(self) -> str:
        """Start every agent; return the leader once exactly one node holds the VIP."""
        for name in self.nodes:
            self.start_agent(name)
        # A node leads only once its workers serve: slow on a loaded machine.
        return wait_for(self.sole_holder, 60, "a leader holding the VIP")

    def terminate_agent(self, name: str, signum: int = signal.SIGTERM) -> subprocess.Popen:
        node = self.nodes[name]
        assert node.agent is not None
        node.agent.send_signal(signum)
        return node.agent

    def kill_node(self, name: str) -> None:
        """Hard death: the cable pulled, then every process of the node SIGKILLed.

        In that order, so that the FINs the kernel sends for the killed
        processes' sockets never reach anyone, as after a power cut.
        """
        node = self.nodes[name]
        _run("ip", "-n", self.switch_ns, "link", "set", name, "down")
        _run("ip", "-n", node.ns, "link", "set", "eth0", "down")
        self._kill_all(node.ns)

    def reboot_node(self, name: str) -> None:
        """Bring a hard-killed node back as after a reboot: no VIP, cable in, processes up."""
        node = self.nodes[name]
        subprocess.run(["ip", "-n", node.ns, "addr", "del", self.vip, "dev", "eth0"],
                       capture_output=True)  # gone already if the node had not held it
        _run("ip", "-n", node.ns, "link", "set", "eth0", "up")
        _run("ip", "-n", self.switch_ns, "link", "set", name, "up")
        self._start_listener(node)
        self.start_agent(name)

    def add_vip_by_hand(self, name: str) -> None:
        """Put the VIP on a node's interface behind its agent's back (a crash leftover)."""
        _run("ip", "-n", self.nodes[name].ns, "addr", "add", self.vip, "dev", "eth0")

    def cut_from_etcd(self, name: str) -> None:
        """Drop the node's traffic to and from etcd only (nftables in its namespace)."""
        rules = f"""
table inet hnfence {{
  chain out {{ type filter hook output priority 0; ip daddr {ETCD_IP} drop; }}
  chain in {{ type filter hook input priority 0; ip saddr {ETCD_IP} drop; }}
}}
"""
        proc = subprocess.run(["ip", "netns", "exec", self.nodes[name].ns, "nft", "-f", "-"],
                              input=rules, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"nft in {self.nodes[name].ns}: {proc.stderr.strip()}")

    def reconnect_to_etcd(self, name: str) -> None:
        _run("ip", "netns", "exec", self.nodes[name].ns, "nft", "delete", "table", "inet",
             "hnfence")

    # -- observations ---------------------------------------------------------------

    def holds_vip(self, name: str) -> bool:
        out = json.loads(_run("ip", "-n", self.nodes[name].ns, "-j", "addr", "show",
                              "dev", self.vip_interface) or "[]")
        return any(a.get("local") == self.vip_ip
                   for link in out for a in link.get("addr_info", []))

    def holders(self) -> list[str]:
        return [name for name in self.nodes if self.holds_vip(name)]

    def sole_holder(self) -> str | None:
        holders = self.holders()
        return holders[0] if len(holders) == 1 else None

    def mac(self, name: str) -> str:
        info = json.loads(_run("ip", "-n", self.nodes[name].ns, "-j", "link", "show", "eth0"))
        return info[0]["address"]

    def client_arp(self) -> str | None:
        """The client's neighbour entry for the VIP (its MAC), if it has one."""
        entries = json.loads(_run("ip", "-n", self.client_ns, "-j", "neigh", "show",
                                  self.vip_ip) or "[]")
        return entries[0].get("lladdr") if entries else None

    def hold_connection(self, reconnect: bool = False, listed: bool = True) -> "IdleClient":
        """An idle TCP connection from the client to VIP:port, once the leader has listed
        it (listed=False: at once).  reconnect: connect again at once after a reset."""
        client = IdleClient(self.popen(self.client_ns, "-u", "-m", "hanode.lab", "hold",
                                       self.vip_ip, str(self.port),
                                       *(["reconnect"] if reconnect else [])))
        if not listed:
            return client
        try:
            key = f"conns/{self.vip_ip}/{client.address[0]}:{client.address[1]}"
            wait_for(lambda: key in self.read_etcd(key), 5, f"{key} in etcd", interval=0.1)
        except BaseException:
            client.close()
            raise
        return client

    def read_etcd(self, prefix: str = "") -> dict[str, object]:
        """The lab's keys under /hanode/<cluster>/<prefix>, read from the client namespace."""
        script = (f"import json; from hanode.store import Store; "
                  f"s = Store([{self.etcd_url!r}], {self.cluster!r}); "
                  f"print(json.dumps({{e.key[len(s.prefix):]: e.value "
                  f"for e in s.get_prefix(s.prefix + {prefix!r})}}))")
        return json.loads(_run("ip", "netns", "exec", self.client_ns, sys.executable, "-c", script))

    def _cli_argv(self, verb: str, *rest: str) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, sys.executable, "-m", "hanode.cli",
                verb, "--etcd", self.etcd_url, "--cluster", self.cluster, *rest]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """``hanode VERB ARGS`` run from the client namespace against the lab's etcd."""
        return subprocess.run(self._cli_argv(*args), capture_output=True, text=True, input=stdin)

    def cli_start(self, *args: str) -> subprocess.Popen:
        """Like cli(), without waiting; output readable from .stdout and .stderr."""
        return subprocess.Popen(self._cli_argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

    def add_user(self, name: str, password: str) -> None:
        proc = self.cli("user", "add", name, "--password-stdin", stdin=password + "\n")
        if proc.returncode != 0:
            raise LabError(f"hanode user add {name}: {proc.stderr.strip()}")

    def status(self, *args: str) -> subprocess.CompletedProcess:
        """``hanode status`` run from the client namespace against the lab's etcd."""
        return self.cli("status", *args)


class IdleClient:
    """The `hold` helper seen from outside: when it connected, when it was reset."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        at, ip, port = self._expect("connected", 10)
        self.connected_at = float(at)
        self.address = (ip, int(port))  # the client's end of the connection

    def _expect(self, word: str, timeout: float) -> list[str]:
        """The fields after `word` on the helper's next line."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                raise LabError(f"client: no '{word}' within {timeout}s")
        finally:
            sel.close()
        line = self.proc.stdout.readline().split()
        if not line or line[0] != word:
            raise LabError(f"client: expected '{word}', got {line or 'end of output'}")
        return line[1:]

    def wait_reset(self, timeout: float) -> float:
        """The monotonic time the connection was reset; LabError if it was not."""
        return float(self._expect("reset", timeout)[0])

    def wait_reconnected(self, timeout: float) -> tuple[float, int]:
        """When the reconnect after the reset succeeded, and how many SYNs it sent again."""
        at, retrans = self._expect("reconnected", timeout)
        return float(at), int(retrans)

    def kept(self, timeout: float = 3.0) -> bool:
        """Whether the reconnected connection carried bytes for 1.5 s without a reset
        or a retransmission pending (that is, a live node holds its other end)."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                raise LabError(f"client: no 'kept' or 'lost' within {timeout}s")
        finally:
            sel.close()
        line = self.proc.stdout.readline().split()
        if not line or line[0] not in ("kept", "lost"):
            raise LabError(f"client: expected 'kept' or 'lost', got {line or 'end of output'}")
        return line[0] == "kept"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


# -- helper processes -------------------------------------------------------------

async def _listen(port: int) -> None:
    import trio

    async def keep(stream: trio.SocketStream) -> None:
        try:
            while await stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass

    await trio.serve_tcp(keep, port)


# 100 ms apart: the reconnected client's bytes for 1.5 s, time for several retransmissions.
KEEP_ROUNDS = 15


def _syn_retransmits(sock: socket.socket) -> int:
    """tcpi_total_retrans of a just-connected socket: SYNs sent again (Linux tcp_info)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 100)[0]


async def _hold(ip: str, port: int, reconnect: bool = False) -> None:
    """Hold an idle connection; with reconnect, connect again the moment it is reset
    (as Windows and the Linux kernel client do) and say how many SYNs that took."""
    import trio

    stream = await trio.open_tcp_stream(ip, port)
    local_ip, local_port = stream.socket.getsockname()[:2]
    print("connected", time.monotonic(), local_ip, local_port, flush=True)
    try:
        data = await stream.receive_some(4096)
        print("closed" if not data else "data", time.monotonic(), flush=True)
        return
    except trio.BrokenResourceError:
        print("reset", time.monotonic(), flush=True)
    if reconnect:
        again = await trio.open_tcp_stream(ip, port)
        print("reconnected", time.monotonic(), _syn_retransmits(again.socket), flush=True)
        # A connection some node took just before it let go of the VIP is dead:
        # the bytes sent on it are reset by the VIP's holder, or never answered.
        try:
            for _ in range(KEEP_ROUNDS):
                await again.send_all(b"x")
                await trio.sleep(0.1)
            info = again.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
            print("kept" if info[0] == 1 and info[2] == 0 else "lost", time.monotonic(),
                  flush=True)  # tcpi_state ESTABLISHED, no retransmission pending
        except trio.BrokenResourceError:
            print("lost", time.monotonic(), flush=True)
        await again.aclose()


def _helper(argv: list[str]) -> int:
    import trio

    if len(argv) == 2 and argv[0] == "listen":
        trio.run(_listen, int(argv[1]))
    elif len(argv) in (3, 4) and argv[0] == "hold" and argv[3:] in ([], ["reconnect"]):
        trio.run(_hold, argv[1], int(argv[2]), len(argv) == 4)
    else:
        print("usage: python -m hanode.lab listen PORT | hold IP PORT [reconnect]",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_helper(sys.argv[1:]))
