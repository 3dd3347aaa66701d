"""The container image, built here with podman from Debian packages, run for real.

- scripts/build-image.sh builds it; a second build gives the same layer digests;
- without a capability or a config it stops with one line and exit status 2;
- in a network namespace this test made (podman --network ns:..., which is
  how host networking looks to the container) the agent, started with an
  embedded etcd, claims its VIP, tini reaps orphans, and SIGTERM (podman stop)
  is a graceful stop that releases the VIP;
- scripts/container_demo.py: three node containers, a copy across
  `podman kill` of the serving one, every byte matched, the killed node
  restarted as a standby.
Everything is removed afterwards, also on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/hanode:test"
PODMAN = ["podman", "--log-level=error", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=16384:16384", "--ulimit", "nproc=32768:32768"]
CAPS = ["--cap-drop", "ALL", "--cap-add", "NET_ADMIN,NET_RAW,NET_BIND_SERVICE"]


def build() -> list[str]:
    proc = subprocess.run(["bash", "scripts/build-image.sh", "--print-layers"], cwd=REPO,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "IMAGE": IMAGE})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if line.startswith("sha256:")]


@pytest.fixture(scope="module")
def image() -> list[str]:
    return build()


def podman_run(*args: str, network: str = "none", timeout: float = 60
               ) -> subprocess.CompletedProcess:
    name = "hnt" + secrets.token_hex(3)
    try:
        return subprocess.run([*PODMAN, "run", "--name", name, "--network", network, *LIMITS,
                               *args], capture_output=True, text=True, timeout=timeout)
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "0", name], capture_output=True)


def test_same_inputs_give_the_same_layers(image):
    assert len(image) == 2  # the Debian base and hanode's virtualenv
    assert build() == image


def test_refuses_to_start_without_a_capability(image, tmp_path):
    proc = podman_run("--cap-drop", "ALL", "--cap-add", "NET_ADMIN,NET_BIND_SERVICE", IMAGE)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "hanode: container: missing capability NET_RAW: run with --cap-add "
        "NET_ADMIN,NET_RAW,NET_BIND_SERVICE (Kubernetes: securityContext.capabilities.add)")


def test_refuses_to_start_without_a_config(image):
    proc = podman_run(*CAPS, IMAGE)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "hanode: container: no config at /etc/hanode/hanode.toml: mount one there "
        "(podman -v ./hanode.toml:/etc/hanode/hanode.toml:ro, or a Kubernetes ConfigMap)")


def test_a_bad_config_is_one_line_naming_file_and_key(image, tmp_path):
    (tmp_path / "hanode.toml").write_text('[cluster]\nname = "x"\nlease_ttl = "soon"\n')
    proc = podman_run(*CAPS, "-e", "HANODE_NODE_NAME=c1",
                      "-v", f"{tmp_path / 'hanode.toml'}:/etc/hanode/hanode.toml:ro", IMAGE)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "hanode: container: /etc/hanode/hanode.toml: cluster.lease_ttl"), proc.stderr


@pytest.fixture
def netns():
    """A namespace of this test's own with eth0 (one end of a veth pair) at 10.79.0.1/24."""
    ns = "hnt" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"],
                    ["addr", "add", "10.79.0.1/24", "dev", "eth0"], ["link", "set", "peer0", "up"],
                    ["link", "set", "eth0", "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def vip_on(ns: str) -> bool:
    out = subprocess.run(["ip", "-n", ns, "-j", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    return any(a.get("local") == "10.79.0.50" for link in json.loads(out)
               for a in link.get("addr_info", []))


def wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_agent_in_a_given_namespace_claims_the_vip_reaps_and_stops_gracefully(
        image, netns, tmp_path):
    (tmp_path / "hanode.toml").write_text("""
[cluster]
name = "ct"
etcd = []

[node]
name = "from-the-environment"

[[vip]]
address = "10.79.0.50/24"
interface = "eth0"

[smb]
workers = 1

[[share]]
name = "test"
path = "/srv/hanode/test"
""")
    (tmp_path / "share").mkdir()
    name = "hnt" + secrets.token_hex(3)
    log = open(tmp_path / "agent.log", "wb")
    proc = subprocess.Popen(
        [*PODMAN, "run", "--name", name, "--network", f"ns:/run/netns/{netns}", *LIMITS, *CAPS,
         # as in the DaemonSet: a read-only root, writable /run, /tmp and state
         "--read-only", "--tmpfs", "/var/lib/hanode", "-e", "HANODE_NODE_NAME=c1",
         "-v", f"{tmp_path / 'hanode.toml'}:/etc/hanode/hanode.toml:ro",
         "-v", f"{tmp_path / 'share'}:/srv/hanode/test", IMAGE],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait(lambda: vip_on(netns), 60, "the VIP on eth0")

        def metrics() -> str:
            return subprocess.run(
                ["ip", "netns", "exec", netns, sys.executable, "-c",
                 "import urllib.request; print(urllib.request.urlopen("
                 "'http://127.0.0.1:9464/metrics', timeout=5).read().decode())"],
                capture_output=True, text=True, timeout=30).stdout
        # The gauges are read off the agent's state every quarter second.
        wait(lambda: "hanode_leader 1.0" in metrics(), 10, "hanode_leader 1 on /metrics")
        # The agent runs as tini's child with the rendered config; an orphan is reaped.
        top = subprocess.run([*PODMAN, "exec", name, "sh", "-c",
                              "cat /proc/1/comm; tr '\\0' ' ' </proc/$(cat /proc/1/task/1/children"
                              " | cut -d' ' -f1)/cmdline; echo; (sleep 0.2 &) ; sleep 1;"
                              " cat /proc/[0-9]*/stat | cut -d' ' -f2,3"],
                             capture_output=True, text=True, timeout=30)
        lines = top.stdout.splitlines()
        assert lines[0] == "tini", top.stdout + top.stderr
        assert "hanode agent --config /run/hanode/hanode.toml" in lines[1]
        assert not [line for line in lines[2:] if line.endswith(" Z")], top.stdout
        run_users_job(netns, tmp_path)
        began = time.monotonic()
        stop = subprocess.run([*PODMAN, "stop", "-t", "20", name], capture_output=True, timeout=60)
        assert stop.returncode == 0
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - began < 10
        assert not vip_on(netns)
        text = (tmp_path / "agent.log").read_text(errors="replace")
        assert "c1: SIGTERM received; stopping" in text, text[-3000:]
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "0", name], capture_output=True)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def run_users_job(netns: str, tmp_path: Path) -> None:
    """deploy/kubernetes/users-job.yaml's command, as it is written there, in a
    container beside the agent's: the SMB users of the mounted Secret land in etcd
    (the agent's embedded one here)."""
    job = yaml.safe_load((REPO / "deploy/kubernetes/users-job.yaml").read_text())
    ctr = job["spec"]["template"]["spec"]["containers"][0]
    users = tmp_path / "users"
    users.mkdir()
    (users / "alice").write_text("alice's password")
    (users / "bob").write_text("bob's password\n")
    (tmp_path / "job.toml").write_text(
        '[cluster]\nname = "ct"\netcd = ["http://127.0.0.1:2379"]\n'
        '[[vip]]\naddress = "10.79.0.50/24"\n')
    env = [arg for e in ctr["env"] if e["name"] == "HANODE_NODE_NAME"
           for arg in ("-e", f"{e['name']}={e['value']}")]
    proc = podman_run("--read-only",
                      "--tmpfs", "/run/hanode", *env,
                      "-v", f"{tmp_path / 'job.toml'}:/etc/hanode/hanode.toml:ro",
                      "-v", f"{users}:/etc/hanode/users:ro",
                      "--entrypoint", ctr["command"][0], IMAGE, *ctr["command"][1:],
                      network=f"ns:/run/netns/{netns}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = podman_run("--entrypoint", "hanode", IMAGE, "user", "list",
                        "--etcd", "http://127.0.0.1:2379", "--cluster", "ct",
                        network=f"ns:/run/netns/{netns}")
    assert listed.stdout.split() == ["alice", "bob"], listed.stdout + listed.stderr


def test_container_demo_copies_survive_podman_kill_and_the_node_comes_back(image):
    proc = subprocess.Popen([sys.executable, "scripts/container_demo.py", "--image", IMAGE,
                             "--size", "16M", "--clients", "2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the demo cleans up on SIGTERM
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out[-5000:]
    assert "killed with podman kill" in out
    assert "OK: every copy completed and matched" in out
    assert out.count(" match\n") == 2
    assert "container removed and started again; back as a standby" in out
    assert "container demo OK" in out
