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
(one trial) and bench/kernel_failover.py (many).
"""

from __future__ import annotations

import hashlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

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

COLLECT = """
    kill $(cat /tmp/progress.pid)
    cat /tmp/dd.done; tail -n 2 /tmp/dd.err
    echo "source $(cat /tmp/src.sha)"
    echo "progress:"; cat /tmp/progress
    echo "kernel:"
    dmesg | grep -iE 'reconnect|reopen|create/open|CIFS: VFS|status code' | tail -n 40
"""


@dataclass
class TrialResult:
    mode: str
    mb: int
    dd_rc: int | None = None
    dd_error: str = ""
    matched: bool = False
    stall_seconds: float | None = None
    guest_report: str = ""
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


def run_trial(mode: str, mb: int, workdir: Path, *, copy_timeout: float = 600) -> TrialResult:
    """One trial in a fresh cluster and a fresh guest; never raises for what
    the copy does (that is the result), only for a lab that would not start."""
    result = TrialResult(mode, mb)
    kernel = initramfs.find_kernel()
    workdir.mkdir(parents=True, exist_ok=True)
    cpio = initramfs.build(workdir / "initramfs.cpio", kernel)
    (workdir / "lab").mkdir(exist_ok=True)
    with Lab(3, workers=1, cluster="kc", workdir=workdir / "lab") as lab:
        lab.add_user(USER, PASSWORD)
        leader = lab.start_agents()
        guest = guestlab.Guest(lab.switch_ns, "br0", workdir, ip=GUEST_IP,
                               memory_mb=max(1024, 3 * mb + 512))
        try:
            guest.start(cpio, kernel)
            guest.run(f"mkdir -p /mnt/v && mount -t cifs //{lab.vip_ip}/test /mnt/v "
                      f"-o username={USER},password={PASSWORD},vers=3.1.1", 120).check()
            guest.run(COPY.format(mb=mb), 300).check()
            target = lab.share_dir / "big"
            size = mb << 20
            samples: list[tuple[float, int]] = []

            def sample() -> int:
                now = target.stat().st_size if target.exists() else 0
                samples.append((time.monotonic(), now))
                return now

            wait_for(lambda: sample() >= size // 4, copy_timeout, "a quarter of the copy",
                     interval=0.05)
            moved_at = time.monotonic()
            if mode == "hard":
                lab.kill_node(leader)
            elif mode == "sigterm":
                lab.terminate_agent(leader, signal.SIGTERM)
            else:
                switched = lab.cli("switchover")
                if switched.returncode != 0:
                    result.error = f"hanode switchover: {switched.stderr.strip()}"
            deadline = time.monotonic() + copy_timeout
            while time.monotonic() < deadline:
                sample()
                done = guest.run("cat /tmp/dd.done 2>/dev/null || true", 30).output
                if done.startswith("dd rc"):
                    result.dd_rc = int(done.split()[2])
                    break
                time.sleep(0.05)
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
        except guestlab.GuestError as exc:
            result.error = str(exc)[-3000:]
        finally:
            guest.close()
    return result
