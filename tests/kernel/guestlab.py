"""The real-kernel-client lab: a Debian kernel under qemu whose cifs client
mounts hanode's share and smbd's, both running in a network namespace the lab
makes.

    <tag> (netns)   bridge br0  10.78.0.10 hanode smb :445, 10.78.0.20 smbd :445
                    tap <tag>t0 on br0 -> the guest's virtio NIC, 10.78.0.100
                    etcd on the namespace's loopback (hanode's store)

The guest (initramfs.py, guest_init.sh) answers shell scripts on its second
serial port (a unix socket here); its first serial port is the kernel's
console, kept in a file so a failure can show the client's own log.  qemu
uses KVM when asked (HANODE_LAB_ACCEL=kvm) and software emulation otherwise:
this machine's /dev/kvm cannot run a stock kernel, and TCG boots in ~12 s.

Only addresses inside the lab's namespace are ever contacted; ``close()``
stops qemu and every process left in the namespace and deletes it, also after
a failure (HANODE_LAB_KEEP=1 keeps its directory: logs, console, shares).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import initramfs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "smb"))
import harness  # noqa: E402  (tests/smb/harness.py: how tests start both servers)

from hanode import embedded_etcd  # noqa: E402

SUBNET = "10.78.0"
HANODE_IP = f"{SUBNET}.10"
SMBD_IP = f"{SUBNET}.20"
GUEST_IP = f"{SUBNET}.100"
PREFIX = 24
BOOT_TIMEOUT = 180.0


class GuestError(Exception):
    """The guest did not boot or did not answer; the message carries the
    end of its console."""


@dataclass(frozen=True)
class Result:
    """One script's outcome in the guest."""

    rc: int
    output: str
    seconds: float  # host wall time from sending the script to its last line

    def check(self) -> str:
        if self.rc != 0:
            raise GuestError(f"guest script failed (rc {self.rc}):\n{clip(self.output)}")
        return self.output


def clip(text: str, head: int = 2000, tail: int = 6000) -> str:
    """``text`` with its middle left out when long: a failure needs its
    beginning (what failed) as much as its end (the guest's last lines)."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[... {len(text) - head - tail} characters left out ...]\n{text[-tail:]}"


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GuestError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def accel() -> str:
    """qemu's accelerator: HANODE_LAB_ACCEL, else tcg (see the module docstring)."""
    return os.environ.get("HANODE_LAB_ACCEL", "tcg")


class Guest:
    """A qemu VM booted from the lab's kernel and initramfs, its NIC a tap
    device on ``bridge`` in namespace ``ns``; ``run`` executes a shell script in it."""

    def __init__(self, ns: str, bridge: str, workdir: Path, *, ip: str = GUEST_IP,
                 memory_mb: int = 1024, name: str = "guest") -> None:
        self.ns = ns
        self.bridge = bridge
        self.workdir = workdir
        self.ip = ip
        self.memory_mb = memory_mb
        self.tap = f"{ns[:10]}{name[:3]}"
        self.console_log = workdir / f"{name}-console.log"
        self.socket_path = workdir / f"{name}-ctl.sock"
        self.qemu_log = workdir / f"{name}-qemu.log"
        self.proc: subprocess.Popen | None = None
        self.boot_seconds = 0.0
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._next_id = 1
        self._broken: str | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self, cpio: Path, kernel: initramfs.Kernel) -> "Guest":
        started = time.monotonic()
        _run("ip", "-n", self.ns, "tuntap", "add", self.tap, "mode", "tap")
        _run("ip", "-n", self.ns, "link", "set", self.tap, "master", self.bridge, "up")
        argv = [
            "ip", "netns", "exec", self.ns, "qemu-system-x86_64",
            "-machine", f"q35,accel={accel()}", "-cpu", "max" if accel() == "tcg" else "host",
            "-m", str(self.memory_mb), "-smp", "1", "-nographic", "-nodefaults", "-no-reboot",
            "-kernel", str(kernel.vmlinuz), "-initrd", str(cpio),
            "-append", f"console=ttyS0 panic=-1 hkc.ip={self.ip}/{PREFIX}",
            "-chardev", f"file,id=con,path={self.console_log}", "-serial", "chardev:con",
            "-chardev", f"socket,id=ctl,path={self.socket_path},server=on,wait=off",
            "-serial", "chardev:ctl",
            "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=n0", "-monitor", "none", "-display", "none",
        ]
        with open(self.qemu_log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = started + BOOT_TIMEOUT
        self._sock = self._connect(deadline)
        line = self._readline(deadline)
        if not line.startswith("@@READY"):
            raise GuestError(f"guest said {line!r} instead of @@READY\n{self.console_tail()}")
        self.boot_seconds = time.monotonic() - started
        return self

    def _connect(self, deadline: float) -> socket.socket:
        while True:
            self._check_alive()
            if self.socket_path.exists():
                sock = socket.socket(socket.AF_UNIX)
                try:
                    sock.connect(str(self.socket_path))
                    return sock
                except OSError:
                    sock.close()
            if time.monotonic() > deadline:
                raise GuestError(f"qemu's control socket never appeared\n{self.console_tail()}")
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            qemu = self.qemu_log.read_text(errors="replace")[-2000:]
            raise GuestError(f"qemu exited ({self.proc.returncode}): {qemu}\n"
                             f"{self.console_tail()}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["ip", "-n", self.ns, "link", "del", self.tap], capture_output=True)

    # -- the control channel ---------------------------------------------------------

    def _readline(self, deadline: float) -> str:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            self._check_alive()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(min(left, 1.0))
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise GuestError(f"the guest closed its control channel\n{self.console_tail()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    def run(self, script: str, timeout: float = 120.0) -> Result:
        """Run ``script`` with the guest's sh; its output (stdout and stderr) and
        status.  A script that outlives ``timeout`` leaves the guest unusable
        (it runs one script at a time): later calls fail at once."""
        if self._broken:
            raise GuestError(f"guest unusable since: {self._broken}")
        assert self._sock is not None
        ident = self._next_id
        self._next_id += 1
        started = time.monotonic()
        self._sock.sendall(f"{ident} ".encode() + base64.b64encode(script.encode()) + b"\n")
        lines: list[str] = []
        try:
            deadline = started + timeout
            while not self._readline(deadline).startswith(f"@@BEGIN {ident}"):
                pass
            while True:
                line = self._readline(deadline)
                if line.startswith(f"@@END {ident} "):
                    rc = int(line.split()[2])
                    break
                lines.append(line)
        except TimeoutError:
            self._broken = f"script {ident} ran over {timeout:.0f}s"
            raise GuestError(f"guest script ran over {timeout:.0f}s:\n{script}\n"
                             f"{self.console_tail()}") from None
        output = base64.b64decode("".join(lines)).decode(errors="replace")
        return Result(rc, output, time.monotonic() - started)

    def console(self) -> str:
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    def console_tail(self) -> str:
        return "--- guest console ---\n" + clip(self.console(), head=0)


def mount_options(target: harness.Target, extra: str = "") -> str:
    """cifs mount options for a harness target; ``extra`` adds e.g. ``vers=3.0,seal``."""
    opts = f"username={target.user},password={target.password},port={target.port}"
    return f"{opts},{extra}" if extra else opts


CA_SHARE = "ca"


class KernelLab:
    """Namespace, bridge, etcd, ``hanode smb``, a private smbd and the guest;
    a context manager that always cleans up."""

    def __init__(self, *, workers: int = 1, memory_mb: int = 1024) -> None:
        self.tag = "hk" + secrets.token_hex(3)
        self.ns = self.tag
        # Short: smbd's unix socket paths below its dirs must fit in 108 bytes.
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.workers = workers
        self.memory_mb = memory_mb
        self.wrap = ["ip", "netns", "exec", self.ns]
        self.etcd_url = f"http://127.0.0.1:{embedded_etcd.free_port()}"
        self.etcd: subprocess.Popen | None = None
        self.hanode: harness.Target | None = None
        self.smbd: harness.Target | None = None
        self.guest: Guest | None = None
        self._ns_made = False

    def __enter__(self) -> "KernelLab":
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        kernel = initramfs.find_kernel()
        cpio = initramfs.build(self.workdir / "initramfs.cpio", kernel)
        _run("ip", "netns", "add", self.ns)
        self._ns_made = True
        _run("ip", "-n", self.ns, "link", "set", "lo", "up")
        _run("ip", "-n", self.ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        for ip in (HANODE_IP, SMBD_IP):
            _run("ip", "-n", self.ns, "addr", "add", f"{ip}/{PREFIX}", "dev", "br0")
        _run("ip", "-n", self.ns, "link", "set", "br0", "up")
        self._start_etcd()
        # Beside the plain share `test`, a continuously available share for the
        # persistent-handle mount (issue 14).
        self.ca_share = self.workdir / "ca"
        self.ca_share.mkdir(parents=True)
        self.hanode = harness.start_hanode(
            self.etcd_url, self.workdir / "hanode", workers=self.workers, listen=HANODE_IP,
            port=445, wrap=self.wrap,
            extra_shares=(f'[[share]]\nname = "{CA_SHARE}"\npath = "{self.ca_share}"\n'
                          "continuous_availability = true\n"))
        self.smbd = harness.start_smbd(self.workdir / "smbd", listen=SMBD_IP, port=445,
                                       wrap=self.wrap)
        self.guest = Guest(self.ns, "br0", self.workdir, memory_mb=self.memory_mb)
        self.guest.start(cpio, kernel)

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{embedded_etcd.free_port()}"
        self.etcd = embedded_etcd.start(self.workdir / "etcd", self.etcd_url, peer,
                                        wrap=self.wrap, log_path=self.workdir / "etcd.log")
        check = (f"from hanode import embedded_etcd; "
                 f"embedded_etcd.wait_healthy({self.etcd_url!r}, 15)")
        proc = subprocess.run([*self.wrap, sys.executable, "-c", check], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise GuestError(f"etcd in {self.ns} did not become healthy: "
                             f"{proc.stderr.strip().splitlines()[-1:]}")

    @property
    def targets(self) -> dict[str, harness.Target]:
        assert self.hanode is not None and self.smbd is not None
        return {"hanode": self.hanode, "smbd": self.smbd}

    def close(self) -> None:
        if self.guest is not None:
            self.guest.close()
        for target in (self.hanode, self.smbd):
            if target is not None:
                harness.stop(target)
        if self.etcd is not None:
            embedded_etcd.stop(self.etcd)
        if self._ns_made:
            out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True,
                                 text=True).stdout
            for pid in out.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
            self._ns_made = False
        if not os.environ.get("HANODE_LAB_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def server_logs_clean(self) -> None:
        """No traceback in hanode's log (a worker that died on a request leaves one)."""
        if self.hanode is not None and "Traceback" in self.hanode.log_text():
            raise AssertionError(self.hanode.log_text()[-4000:])
