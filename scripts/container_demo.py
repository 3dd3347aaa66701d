"""The failover experiment of ``hanode demo``, with every node in a podman container.

Run by scripts/container-demo.sh (which builds the image first).  A podman
bridge network of its own (10.78.<n>.0/24, n free and random), on it etcd and
N hanode node containers of the image (each with only NET_ADMIN, NET_RAW and
NET_BIND_SERVICE, one shared directory bind-mounted as share ``test``), and a
client network namespace cabled to the same bridge, where the project's demo
clients (hanode.democlient) copy files to ``\\\\VIP\\test``.  Mid-copy the
serving container is killed with ``podman kill`` (or stopped with ``podman
stop``: SIGTERM through tini); once the copies are done it is removed and
started again, as a scheduler would, and must come back as a standby.

The copying, watching and report are hanode.demo's (the same phase timings);
this module only provides the lab: containers instead of namespaces.  Every
container, the network, the namespace and the veth are removed on any exit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hanode import demo
from hanode.cli import UserError
from hanode.lab import LabError, wait_for

PODMAN = ["podman", "--log-level=error", "--runtime", os.environ.get("HANODE_OCI_RUNTIME", "runc")]
KILL_WORDS = {"podman-kill": "killed with podman kill (SIGKILL to the whole container)",
              "podman-stop": "stopped with podman stop (SIGTERM to the agent, through tini)"}
ETCD_PORT = 2379
SMB_PORT = 445


def _run(*argv: str, input: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:6])}...: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def _limits() -> list[str]:
    """Resource limits the container may have: podman's defaults (a million open
    files) fail where the host's hard limit is lower and raising it is not allowed."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 262144)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=32768:32768"]


@dataclass
class Node:
    name: str
    ip: str
    config: Path
    log: Path
    container: str
    proc: subprocess.Popen | None = None
    netns: str | None = None


class PodmanLab:
    """What hanode.demo.Demo needs from a lab, made of podman containers."""

    def __init__(self, image: str, nodes: int, workdir: Path):
        self.image = image
        self.tag = "hn" + secrets.token_hex(3)
        self.workdir = workdir
        self.subnet = self._free_subnet()
        self.network = f"{self.tag}-lab"
        self.bridge = ""  # podman names it when the network is made
        self.client_ns = f"{self.tag}-cl"
        self.client_veth = f"{self.tag}cl"
        self.vip_ip = f"{self.subnet}.50"
        self.vip = f"{self.vip_ip}/24"
        self.port = SMB_PORT
        self.etcd_url = f"http://{self.subnet}.2:{ETCD_PORT}"
        self.cluster = "demo"
        self.share_dir = workdir / "share"
        self.nodes = {f"n{i}": Node(f"n{i}", f"{self.subnet}.{10 + i}", workdir / f"n{i}.toml",
                                    workdir / f"n{i}.log", f"{self.tag}-n{i}")
                      for i in range(1, nodes + 1)}
        self._made: list[str] = []  # what down() removes, in reverse

    @staticmethod
    def _free_subnet() -> str:
        used = _run("ip", "-4", "route", "show") + _run(*PODMAN, "network", "ls", "--format",
                                                        "{{range .Subnets}}{{.Subnet}} {{end}}")
        free = [n for n in range(1, 255) if f"10.78.{n}." not in used]
        if not free:
            raise LabError("no free 10.78.<n>.0/24 subnet")
        return f"10.78.{random.choice(free)}"

    # -- up and down -------------------------------------------------------------------

    def up(self) -> None:
        self.share_dir.mkdir(parents=True)
        _run(*PODMAN, "network", "create", "--driver", "bridge", "--internal",
             "--subnet", f"{self.subnet}.0/24",
             "--gateway", f"{self.subnet}.1", "--label", f"io.hanode.lab={self.tag}",
             self.network)
        self._made.append("network")
        self.bridge = _run(*PODMAN, "network", "inspect", "--format", "{{.NetworkInterface}}",
                           self.network).strip()
        self._start_etcd()
        self._add_client_ns()
        script = f"from hanode import embedded_etcd; embedded_etcd.wait_healthy({self.etcd_url!r}, 20)"
        _run("ip", "netns", "exec", self.client_ns, sys.executable, "-c", script)
        for node in self.nodes.values():
            node.config.write_text(self.node_config())

    def down(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
        # The client's veth first: a bridge with a port left is not removed with its network.
        if "netns" in self._made:
            subprocess.run(["ip", "netns", "del", self.client_ns], capture_output=True)
        containers = subprocess.run([*PODMAN, "ps", "-a", "-q", "--filter",
                                     f"label=io.hanode.lab={self.tag}"],
                                    capture_output=True, text=True).stdout.split()
        if containers:
            subprocess.run([*PODMAN, "rm", "-f", "-v", "-t", "0", *containers], capture_output=True)
        for node in self.nodes.values():
            if node.proc is not None:
                node.proc.wait()
        if "network" in self._made:
            subprocess.run([*PODMAN, "network", "rm", "-f", self.network], capture_output=True)
            if self.bridge and Path(f"/sys/class/net/{self.bridge}").exists():
                subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self._made.clear()

    def _start_etcd(self) -> None:
        ip = f"{self.subnet}.2"
        client, peer = f"http://{ip}:{ETCD_PORT}", f"http://{ip}:2380"
        with open(self.workdir / "etcd.log", "ab") as log:
            subprocess.run([*PODMAN, "run", "-d", "--name", f"{self.tag}-etcd", "--label",
                            f"io.hanode.lab={self.tag}", "--network", self.network, "--ip", ip,
                            *_limits(), "--entrypoint", "etcd", self.image,
                            "--name", "lab", "--data-dir", "/tmp/etcd",
                            "--listen-client-urls", client, "--advertise-client-urls", client,
                            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                            "--initial-cluster", f"lab={peer}", "--heartbeat-interval", "50",
                            "--election-timeout", "500", "--log-level", "error"],
                           stdout=log, stderr=subprocess.STDOUT, check=True)

    def _add_client_ns(self) -> None:
        """A namespace with eth0 at .100, its veth peer a port of the network's bridge."""
        _run("ip", "netns", "add", self.client_ns)
        self._made.append("netns")
        ns = ["ip", "-n", self.client_ns]
        _run("ip", "link", "add", self.client_veth, "type", "veth", "peer", "name", "eth0",
             "netns", self.client_ns)
        _run("ip", "link", "set", self.client_veth, "master", self.bridge, "up")
        _run(*ns, "link", "set", "lo", "up")
        _run(*ns, "addr", "add", f"{self.subnet}.100/24", "dev", "eth0")
        _run(*ns, "link", "set", "eth0", "up")

    def node_config(self) -> str:
        return f"""\
[cluster]
name = "{self.cluster}"
etcd = ["{self.etcd_url}"]
lease_ttl = 2

[node]
name = "set-by-HANODE_NODE_NAME"

[[vip]]
address = "{self.vip}"
interface = "eth0"

[smb]
port = {self.port}
workers = {demo.WORKERS}

[[share]]
name = "test"
path = "/srv/hanode/test"
"""

    # -- nodes ---------------------------------------------------------------------------

    def start_node(self, name: str) -> None:
        """``podman run`` the node's container, attached: its output is the node's log."""
        node = self.nodes[name]
        cmd = [*PODMAN, "run", "--name", node.container, "--label", f"io.hanode.lab={self.tag}",
               "--hostname", name, "--network", self.network, "--ip", node.ip,
               "--cap-drop", "ALL", "--cap-add", "NET_ADMIN,NET_RAW,NET_BIND_SERVICE",
               *_limits(), "--tmpfs", "/var/lib/hanode", "-e", f"HANODE_NODE_NAME={name}",
               "-v", f"{node.config}:/etc/hanode/hanode.toml:ro",
               "-v", f"{self.share_dir}:/srv/hanode/test", self.image]
        node.netns = None
        with open(node.log, "ab") as log:
            node.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def start_agents(self) -> str:
        for name in self.nodes:
            self.start_node(name)
        return wait_for(self.sole_holder, 60, "a leader holding the VIP", interval=0.2)

    def _netns(self, node: Node) -> str | None:
        if node.netns is None:
            proc = subprocess.run([*PODMAN, "inspect", "--format",
                                   "{{.NetworkSettings.SandboxKey}}", node.container],
                                  capture_output=True, text=True)
            node.netns = proc.stdout.strip() or None
        return node.netns

    def holds_vip(self, name: str) -> bool:
        path = self._netns(self.nodes[name])
        if path is None:
            return False
        proc = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "addr", "show", "dev",
                               "eth0"], capture_output=True, text=True)
        if proc.returncode != 0:
            return False
        return any(a.get("local") == self.vip_ip
                   for link in json.loads(proc.stdout or "[]") for a in link.get("addr_info", []))

    def sole_holder(self) -> str | None:
        holders = [name for name in self.nodes if self.holds_vip(name)]
        return holders[0] if len(holders) == 1 else None

    def kill_container(self, name: str, how: str) -> None:
        node = self.nodes[name]
        if how == "podman-kill":
            _run(*PODMAN, "kill", node.container)
        else:  # podman stop waits for the graceful stop; the demo must not
            subprocess.Popen([*PODMAN, "stop", "-t", "20", node.container],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self, name: str) -> None:
        """What a scheduler does with a dead container: remove it and start a new one."""
        node = self.nodes[name]
        if node.proc is not None:
            node.proc.wait(timeout=30)
        _run(*PODMAN, "rm", "-f", "-v", node.container)
        self.start_node(name)

    # -- etcd, from the client namespace ------------------------------------------------

    def _cli_argv(self, verb: str, *rest: str) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, sys.executable, "-m", "hanode.cli",
                verb, "--etcd", self.etcd_url, "--cluster", self.cluster, *rest]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self._cli_argv(*args), capture_output=True, text=True, input=stdin)

    def add_user(self, name: str, password: str) -> None:
        proc = self.cli("user", "add", name, "--password-stdin", stdin=password + "\n")
        if proc.returncode != 0:
            raise LabError(f"hanode user add {name}: {proc.stderr.strip()}")

    def node_states(self) -> dict[str, str]:
        report = json.loads(self.cli("status", "--json").stdout or "{}")
        return {n["name"]: n["state"] for n in report.get("nodes", [])}


class ContainerDemo(demo.Demo):
    """hanode.demo.Demo with the serving node's container killed instead of its namespace."""

    def _kill(self) -> None:
        assert self.node_from is not None
        self.killed_at, self.killed_wall = time.monotonic(), time.time()
        self.lab.kill_container(self.node_from, self.kill)


def restart_as_scheduler(lab: PodmanLab, res: dict[str, Any], out) -> bool:
    """Remove and start the killed node's container again; it must come back as a
    standby while the VIP stays with the new leader.  Adds a phase to res."""
    name, leader = res["node_from"], res["node_to"]
    began = time.monotonic()
    lab.restart(name)
    try:
        wait_for(lambda: lab.node_states().get(name) == "standby", 60,
                 f"{name} back as a standby", interval=0.3)
    except LabError as exc:
        print(f"container demo: {exc}", file=out)
        return False
    back = time.monotonic() - began
    holder = lab.sole_holder()
    res["restart"] = {"node": name, "standby_after": round(back, 3), "vip_holder": holder}
    return holder == leader


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="container-demo")
    parser.add_argument("--image", default="localhost/hanode:latest")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--size", default="256M")
    parser.add_argument("--kill", choices=list(KILL_WORDS), default="podman-kill")
    args = parser.parse_args(argv)
    try:
        size = demo.parse_size(args.size)
    except UserError as exc:
        print(f"container-demo: {exc}", file=sys.stderr)
        return 2
    if not 2 <= args.nodes <= 9 or not 1 <= args.clients <= 20:
        print("container-demo: --nodes 2..9, --clients 1..20", file=sys.stderr)
        return 2
    demo.KILLS.update(KILL_WORDS)  # the report's words for the two container kills
    signal.signal(signal.SIGTERM, demo._raise_interrupt)
    signal.signal(signal.SIGINT, demo._raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="hanode-container-demo-"))
    lab = PodmanLab(args.image, args.nodes, workdir)
    out = sys.stdout
    res = None
    ok = False
    try:
        print(f"lab {lab.tag}: podman network {lab.network} ({lab.subnet}.0/24); "
              f"etcd container {lab.etcd_url}; node containers "
              + ", ".join(f"{n.name} {n.ip}" for n in lab.nodes.values())
              + f"; VIP {lab.vip}; clients in namespace {lab.client_ns}", flush=True)
        t0 = time.monotonic()
        lab.up()
        res = ContainerDemo(lab, args.clients, size, args.kill, out).run()
        print(demo.render(res), flush=True)
        restarted = restart_as_scheduler(lab, res, out)
        if "restart" in res:
            r = res["restart"]
            print(f"  {r['node']}: container removed and started again; back as a standby "
                  f"after {r['standby_after']:.1f} s; VIP still on {r['vip_holder']}")
        ok = res["ok"] and restarted
        print(f"\ncontainer demo {'OK' if ok else 'FAILED'} in {time.monotonic() - t0:.0f} s",
              flush=True)
    except LabError as exc:
        print(f"container-demo: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("container-demo: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        lab.down()
        if not ok:
            for log in sorted(workdir.glob("*.log")):
                print(f"--- {log.name} (last lines)\n"
                      + "\n".join(log.read_text(errors="replace").splitlines()[-15:]),
                      file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
