"""The seed's experiment with the Linux kernel client: a 3-node hanode
cluster (hanode/lab.py: agents with SMB workers in namespaces), the guest of
the kernel-client lab on the cluster's bridge, copying a file with
``dd conv=fsync`` to //VIP/test while the serving node is killed (or stopped,
or switched over).

One trial: what the copy ended with (dd's status and message), whether the
file on the shared storage matches the guest's source byte for byte, how
long the file stopped growing on the shared storage around the move (the
stall, sampled by the host every 50 ms), the guest's own progress timeline
(uptime and the kernel's Dirty/Writeback counters every 0.5 s) and cifs.ko's
log lines about reconnecting and reopening.  Used by test_kernel_failover.py
(one trial of each) and bench/kernel_failover.py (many).  ``run_read_trial``
is the same with a sha256sum of a file on //VIP/test instead of the copy.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import guestlab
import initramfs

from hanode.lab import Lab, wait_for

GUEST_IP = "10.77.0.101"  # the lab's own client namespace is .100
USER, PASSWORD = "kc", "Kc-lab-pw1"
MODES = ("hard", "sigterm", "switchover")

COPY = """
    # cifs_reopen_file's lines and SMB2_open's: one CREATE inside a reopen is a
    # durable reclaim, two a refused reclaim and a fresh open by name.
    echo 1 > /proc/fs/cifs/cifsFYI
    echo 'func cifs_reopen_file +p' > /sys/kernel/debug/dynamic_debug/control
    echo 'func SMB2_open +p' > /sys/kernel/debug/dynamic_debug/control
    dd if=/dev/urandom of=/tmp/src bs=1M count={mb} 2>/dev/null
    sha256sum < /tmp/src | cut -d' ' -f1 > /tmp/src.sha
    (
      while :; do
        echo "$(cut -d' ' -f1 /proc/uptime) $(grep -E '^(Dirty|Writeback):' /proc/meminfo \\
              | tr -s ' ' | cut -d' ' -f2 | tr '\\n' ' ')"
        sleep 0.5
      done
    ) > /tmp/progress &
    echo $! > /tmp/progress.pid
    (
      start=$(cut -d' ' -f1 /proc/uptime)
      dd if=/tmp/src of=/mnt/v/big bs=1M conv=fsync 2> /tmp/dd.err
      echo "dd rc $? start $start end $(cut -d' ' -f1 /proc/uptime)" > /tmp/dd.done
    ) &
    echo started
"""

# cifs.ko's lines about reconnecting and reopening.
KERNEL_LINES = """
    echo "kernel:"
    dmesg | grep -iE 'reconnect|reopen|create/open|CIFS: VFS|status code' | tail -n 40
"""

COLLECT = """
    kill $(cat /tmp/progress.pid)
    cat /tmp/dd.done; tail -n 2 /tmp/dd.err
    echo "source $(cat /tmp/src.sha)"
    echo "progress:"; cat /tmp/progress
""" + KERNEL_LINES


@dataclass
class TrialResult:
    mode: str
    mb: int
    dd_rc: int | None = None
    dd_error: str = ""
    matched: bool = False
    stall_seconds: float | None = None
    guest_report: str = ""
    moves: str = ""  # the nodes' log lines about the VIP, drains and fences
    error: str = ""
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.dd_rc == 0 and self.matched


def _stall(samples: list[tuple[float, int]], moved_at: float) -> float | None:
    """The longest time the file on the shared storage did not grow, among the
    gaps that end after the move (the copy's pause across it)."""
    grew = [t for (t, size), (_, before) in zip(samples[1:], samples) if size > before]
    gaps = [b - a for a, b in zip(grew, grew[1:]) if b > moved_at]
    return max(gaps) if gaps else None


@contextmanager
def _cluster_and_guest(workdir: Path, memory_mb: int,
                       smb_config: str = "") -> Iterator[tuple[Lab, str, guestlab.Guest]]:
    """A fresh 3-node cluster with a leader, and the guest with //VIP/test mounted;
    smb_config: more keys of the nodes' [smb] table."""
    kernel = initramfs.find_kernel()
    workdir.mkdir(parents=True, exist_ok=True)
    cpio = initramfs.build(workdir / "initramfs.cpio", kernel)
    (workdir / "lab").mkdir(exist_ok=True)
    with Lab(3, workers=1, cluster="kc", workdir=workdir / "lab", smb_config=smb_config) as lab:
        lab.add_user(USER, PASSWORD)
        leader = lab.start_agents()
        guest = guestlab.Guest(lab.switch_ns, "br0", workdir, ip=GUEST_IP,
                               memory_mb=memory_mb)
        try:
            guest.start(cpio, kernel)
            guest.run(f"mkdir -p /mnt/v && mount -t cifs //{lab.vip_ip}/test /mnt/v "
                      f"-o username={USER},password={PASSWORD},vers=3.1.1", 120).check()
            yield lab, leader, guest
        finally:
            guest.close()


def _move(lab: Lab, leader: str, mode: str) -> str:
    """Move the service away from ``leader``; an error message, or ""."""
    if mode == "hard":
        lab.kill_node(leader)
    elif mode == "sigterm":
        lab.terminate_agent(leader, signal.SIGTERM)
    else:
        switched = lab.cli("switchover")
        if switched.returncode != 0:
            return f"hanode switchover: {switched.stderr.strip()}"
    return ""


def _wait_done(guest: guestlab.Guest, marker: str, timeout: float,
               tick: Callable[[], object] = lambda: None) -> int | None:
    """The status the guest wrote to ``marker`` (``... rc N ...``), polled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        done = guest.run(f"cat {marker} 2>/dev/null || true", 30).output
        if " rc " in done:
            return int(done.split()[2])
        time.sleep(0.05)
    return None


def _copy_across(result: TrialResult, guest: guestlab.Guest, target: Path,
                 move: Callable[[], str], copy_timeout: float) -> None:
    """The guest's copy to ``target`` (as the server's disk has it), ``move``
    called once a quarter of it is there; fills in ``result``."""
    mb = result.mb
    guest.run(COPY.format(mb=mb), 300).check()
    samples: list[tuple[float, int]] = []

    def sample() -> int:
        now = target.stat().st_size if target.exists() else 0
        samples.append((time.monotonic(), now))
        return now

    wait_for(lambda: sample() >= (mb << 20) // 4, copy_timeout, "a quarter of the copy",
             interval=0.05)
    moved_at = time.monotonic()
    result.error = move()
    result.dd_rc = _wait_done(guest, "/tmp/dd.done", copy_timeout, sample)
    result.samples = samples
    result.stall_seconds = _stall(samples, moved_at)
    report = guest.run(COLLECT, 60).output
    result.guest_report = report
    result.dd_error = "\n".join(line for line in report.splitlines()[1:3]
                                if not line.startswith("source"))
    source = next((line.split()[1] for line in report.splitlines()
                   if line.startswith("source ")), "")
    data = target.read_bytes() if target.exists() else b""
    result.matched = hashlib.sha256(data).hexdigest() == source


# What the nodes logged about moving the service: a copy that failed because
# a node was fenced (its etcd keepalive missed under load) says so here.
MOVE_WORDS = ("VIP released", "fenced", "claimed", "drained", "not drained")


def _moves(lab: Lab) -> str:
    lines = []
    for node in lab.nodes.values():
        if node.log.exists():
            lines += [line for line in node.log.read_text(errors="replace").splitlines()
                      if any(word in line for word in MOVE_WORDS)]
    return "\n".join(sorted(lines))


def run_trial(mode: str, mb: int, workdir: Path, *, copy_timeout: float = 600,
              smb_config: str = "") -> TrialResult:
    """One copy trial in a fresh cluster and a fresh guest; never raises for
    what the copy does (that is the result), only for a lab that would not start."""
    result = TrialResult(mode, mb)
    try:
        with _cluster_and_guest(workdir, max(1024, 3 * mb + 512), smb_config) as \
                (lab, leader, guest):
            try:
                _copy_across(result, guest, lab.share_dir / "big",
                             lambda: _move(lab, leader, mode), copy_timeout)
            finally:
                result.moves = _moves(lab)
    except guestlab.GuestError as exc:
        result.error = guestlab.clip(str(exc))
    return result


def run_reset_trial(server: str, mb: int, *, copy_timeout: float = 600) -> TrialResult:
    """The same copy to one server of the kernel-client lab (``hanode``, one
    node, or ``smbd``), its side of the connection destroyed (``ss -K``: a
    RST to the client) when a quarter is on its disk: the reference for what
    the client does with a reset no move prepared."""
    result = TrialResult(f"reset-{server}", mb)
    try:
        with guestlab.KernelLab(memory_mb=max(1024, 3 * mb + 512)) as lab:
            target = lab.targets[server]
            lab.guest.run(f"mkdir -p /mnt/v && mount -t cifs {target.unc} /mnt/v "
                          f"-o {guestlab.mount_options(target, 'vers=3.1.1')}", 120).check()

            def reset() -> str:
                killed = subprocess.run([*lab.wrap, "ss", "-K", "src", target.host,
                                         "dst", lab.guest.ip], capture_output=True, text=True)
                return "" if lab.guest.ip in killed.stdout else f"ss -K: {killed}"

            _copy_across(result, lab.guest, target.share / "big", reset, copy_timeout)
    except guestlab.GuestError as exc:
        result.error = guestlab.clip(str(exc))
    return result


READ = """
    echo 1 > /proc/fs/cifs/cifsFYI
    echo 'func cifs_reopen_file +p' > /sys/kernel/debug/dynamic_debug/control
    echo 'func SMB2_open +p' > /sys/kernel/debug/dynamic_debug/control
    (
      sha256sum < /mnt/v/big > /tmp/read.sha
      echo "read rc $? end $(cut -d' ' -f1 /proc/uptime)" > /tmp/read.done
    ) 2> /tmp/read.err &
    (
      # bytes sha256sum has read so far (its rchar), with the guest's uptime
      while :; do
        p=$(pidof sha256sum) || break
        echo "$(cut -d' ' -f1 /proc/uptime) $(grep '^rchar:' /proc/$p/io | cut -d' ' -f2)"
        sleep 0.2
      done
    ) > /tmp/progress &
    echo $! > /tmp/progress.pid
"""
READ_REPORT = """
    kill $(cat /tmp/progress.pid) 2>/dev/null
    cat /tmp/read.done; cat /tmp/read.err
    echo "read $(cut -d' ' -f1 /tmp/read.sha)"
    echo "progress:"; cat /tmp/progress
""" + KERNEL_LINES
# The read gets this head start before the move, so the move comes mid-read.
READ_HEAD_START = 1.5


def _guest_stall(report: str) -> float | None:
    """The longest time the reader's byte count did not grow (from the
    guest's own timestamped samples)."""
    points = []
    for line in report.split("progress:", 1)[-1].split("kernel:", 1)[0].splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            points.append((float(fields[0]), int(fields[1])))
    grew = [t for (t, done), (_, before) in zip(points[1:], points) if done > before]
    gaps = [b - a for a, b in zip(grew, grew[1:])]
    return max(gaps) if gaps else None


def run_read_trial(mode: str, mb: int, workdir: Path, *, timeout: float = 600) -> TrialResult:
    """sha256sum of a file on //VIP/test while the service moves: the digest
    must be the file's; the stall is the guest's longest pause in reading."""
    result = TrialResult(f"read-{mode}", mb)
    try:
        with _cluster_and_guest(workdir, max(1024, 2 * mb + 512)) as (lab, leader, guest):
            data = os.urandom(mb << 20)
            (lab.share_dir / "big").write_bytes(data)
            guest.run(READ, 60).check()
            time.sleep(READ_HEAD_START)
            result.error = _move(lab, leader, mode)
            result.dd_rc = _wait_done(guest, "/tmp/read.done", timeout)
            report = guest.run(READ_REPORT, 60).output
            result.guest_report = report
            result.stall_seconds = _guest_stall(report)
            result.dd_error = "\n".join(report.splitlines()[1:2])
            result.matched = f"read {hashlib.sha256(data).hexdigest()}" in report
    except guestlab.GuestError as exc:
        result.error = guestlab.clip(str(exc))
    return result
