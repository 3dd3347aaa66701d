"""The two SMB servers the benchmarks compare, side by side on loopback.

Both benches need the same thing: an etcd of their own, ``hanode smb`` and a
private Samba smbd, configured as the tests configure them (the servers come
from ``tests/smb/harness.py``, so that a bench measures exactly what the tests
check), all torn down whatever happens, Ctrl-C included.  Only 127.0.0.1 is
ever contacted.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durable_records import etcd_process  # noqa: E402  (an embedded etcd)
from lifecycle import BenchError, run_main  # noqa: E402,F401  (re-exported for the benches)
from tests.smb import harness  # noqa: E402
from tests.smb.harness import Target  # noqa: E402

# smbclient's options per protection mode; SMB3 means "up to 3.1.1".
MODES = {
    "plain": ["-m", "SMB3", "--client-protection=off"],
    "signed": ["-m", "SMB3", "--client-protection=sign"],
    "encrypted": ["-m", "SMB3", "--client-protection=encrypt"],
}


# smbd puts unix sockets a few levels below its dirs (lock/msg.sock/<pid>), and
# sun_path holds 108 bytes; beyond this smbd exits without a word.
MAX_BASE = 60


class Pair(NamedTuple):
    hanode: Target
    smbd: Target
    work: Path  # scratch space for the client's files, removed with the servers
    etcd_pid: int | None = None  # the embedded etcd hanode uses, whose CPU a bench may count

    def in_turn(self, run: int) -> tuple[Target, Target]:
        """Both servers, the one going first swapped every run, so that neither
        always meets a warmer or a more loaded machine."""
        return (self.hanode, self.smbd) if run % 2 == 0 else (self.smbd, self.hanode)


def default_tmpdir() -> str | None:
    """tmpfs when there is one: the shares and the client's files then live in
    memory, so the figures are the servers' and not the disk's writeback."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@contextmanager
def servers(parent: str | None, workers: int, etcd: str | None = None,
            hanode_options: dict | None = None, smbd_options: dict | None = None
            ) -> Iterator[Pair]:
    """etcd (an embedded one unless ``etcd`` names one), ``hanode smb``
    (``workers`` processes) and smbd in a fresh temp dir under ``parent``;
    everything stopped and removed on the way out.  The options go to
    harness.start_hanode and start_smbd (more shares, say); in hanode's
    ``extra_shares``, ``{base}`` stands for the temp dir."""
    with ExitStack() as stack:
        base = Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="hnbench-", dir=parent)))
        if len(str(base)) > MAX_BASE:
            raise BenchError(f"{base}: too long a path for smbd's unix sockets "
                             f"(at most {MAX_BASE} characters; choose a shorter --tmpdir)")
        url, etcd_pid = stack.enter_context(etcd_process(etcd))
        hanode_options = dict(hanode_options or {})
        if "extra_shares" in hanode_options:
            hanode_options["extra_shares"] = hanode_options["extra_shares"].format(base=base)
        try:
            hanode = harness.start_hanode(url, base / "hanode", workers=workers,
                                          log_level="warning", **hanode_options)
            stack.callback(stop, hanode)
            smbd = harness.start_smbd(base / "smbd", **(smbd_options or {}))
            stack.callback(stop, smbd)
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None
        (base / "client").mkdir()
        yield Pair(hanode, smbd, base / "client", etcd_pid)
        for target in (hanode, smbd):
            if "Traceback" in target.log_text():
                raise BenchError(f"{target.name} logged a traceback:\n"
                                 f"{target.log_text()[-3000:]}")


def stop(target: Target, timeout: float = 10.0) -> None:
    """Stop a server and wait for its whole process group (hanode's workers,
    smbd's per-client children), not only its first process."""
    harness.stop(target)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(target.proc.pid, signal.SIGKILL if time.monotonic() > deadline else 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def smbclient(target: Target, mode: str, *args: str, stdin: str | None = None,
              timeout: float = 1800) -> str:
    """Run smbclient against ``target``; its output, or BenchError if it failed."""
    cmd = ["smbclient", "-p", str(target.port), target.unc, "-U", target.credentials,
           *MODES[mode], *args]
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"smbclient against {target.name} timed out") from None
    output = done.stdout + done.stderr
    if done.returncode != 0 or "NT_STATUS_" in output:
        raise BenchError(f"smbclient against {target.name} ({mode}) failed "
                         f"(exit {done.returncode}):\n{output[-2000:]}")
    return output


def process_count(target: Target) -> int:
    return len(psutil.Process(target.proc.pid).children(recursive=True)) + 1


def cpu_seconds(target: Target, processes: int, timeout: float = 2.0) -> float:
    """CPU time (user + system) the server's processes used so far, once it is
    back to ``processes`` processes: the live ones (hanode's workers, smbd's
    parent) and the children they reaped (smbd's process for a client that left).

    On a shared machine a server's CPU per byte moves far less with the load
    than its MB/s does, which makes it the steadier figure to compare."""
    root = psutil.Process(target.proc.pid)
    deadline = time.monotonic() + timeout
    while process_count(target) > processes and time.monotonic() < deadline:
        time.sleep(0.02)
    return process_cpu([root, *root.children(recursive=True)])


def process_cpu(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` and of the children they reaped."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # it ended meanwhile: its parent counts it once reaped
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def compare(ours: list[float], theirs: list[float]) -> dict:
    """Medians and the median of the per-run hanode/smbd ratios (each run's two
    figures were taken back to back, so their ratio cancels most of the load the
    machine had then), with the lowest and highest ratio to show the spread."""
    ratios = [a / b for a, b in zip(ours, theirs)]
    return {"hanode": ours, "smbd": theirs, "hanode_median": statistics.median(ours),
            "smbd_median": statistics.median(theirs), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}


def smb_lines(pairs: list[str]) -> str:
    """``--smb KEY=VALUE`` options as lines of hanode's [smb] table; ValueError
    names the first one that is not KEY=VALUE."""
    for kv in pairs:
        if "=" not in kv:
            raise ValueError(f"--smb {kv!r}: expected KEY=VALUE")
    return "\n".join(f"{k.strip()} = {v.strip()}" for k, v in (kv.split("=", 1) for kv in pairs))


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: the machine is shared, so say how busy it was."""
    return [round(x, 2) for x in os.getloadavg()]


def bench_main(tmpdir: str | None, workers: int, as_json: bool,
               measure_pair: Callable[[Pair], dict], facts: dict,
               print_table: Callable[[dict], None], etcd: str | None = None,
               extra_shares: str = "", smb_extra: str = "") -> int:
    """Start both servers, measure, and print the result with the run's facts
    (parameters, load before and after, wall time) as a table or one JSON line.
    ``smb_extra``: more lines of hanode's [smb] table (``max_credits = 64``)."""
    def body() -> int:
        started, load_before = time.monotonic(), load_average()
        with servers(tmpdir, workers, etcd,
                     {"extra_shares": extra_shares, "smb_extra": smb_extra}) as pair:
            result = measure_pair(pair)
        result.update(facts, workers=workers, load_before=load_before,
                      load_after=load_average(), seconds=time.monotonic() - started)
        if as_json:
            print(json.dumps(result))
        else:
            print_table(result)
        return 0

    return run_main(body)
