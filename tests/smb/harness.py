"""Real SMB servers for tests: hanode's (``hanode smb``) and a private Samba smbd,
plus smbtorture runs against both to compare.

Both servers listen on free loopback ports with the same user, password and an
empty share in a tmp dir.  The user is ``root`` because smbd maps SMB users to
Unix accounts and hanode's workers run as root: that way both servers act with
the same rights on their shares.  smbd gets its own config, private, lock,
state, cache and pid dirs, so it shares nothing with any other smbd here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import psutil

from hanode.embedded_etcd import free_port
from hanode.lab import wait_for

USER = "root"
PASSWORD = "Hn-test-pw1"
SHARE = "test"
START_TIMEOUT = 20.0


@dataclass
class Target:
    """One running SMB server, as a client sees it."""

    name: str
    port: int
    share: Path
    log: Path
    proc: subprocess.Popen
    user: str = USER
    password: str = PASSWORD
    share_name: str = SHARE
    config: Path | None = None
    host: str = "127.0.0.1"

    @property
    def unc(self) -> str:
        return f"//{self.host}/{self.share_name}"

    @property
    def credentials(self) -> str:
        return f"{self.user}%{self.password}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _connects(target: Target, wrap: Sequence[str]) -> bool:
    """Whether the target's port takes a connection; ``wrap`` (``ip netns exec
    NS``) asks from inside the namespace the server runs in."""
    if wrap:
        probe = f"exec 3<>/dev/tcp/{target.host}/{target.port}"
        return subprocess.run([*wrap, "bash", "-c", probe], capture_output=True).returncode == 0
    with socket.socket() as s:
        return s.connect_ex((target.host, target.port)) == 0


def _wait_port(target: Target, wrap: Sequence[str] = (),
               timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited: {target.log_text()[-3000:]}")
        if _connects(target, wrap):
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"{target.name} did not listen on {target.port}: {target.log_text()[-3000:]}")


def _listening(target: Target, wrap: Sequence[str] = ()) -> Target:
    """The target once its port takes connections; stopped if it never does."""
    try:
        _wait_port(target, wrap)
    except BaseException:
        _stop_group(target.proc)
        raise
    return target


def _stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def hanode_command() -> list[str]:
    script = Path(sys.executable).parent / "hanode"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hanode.cli"]


def add_user(config: Path, user: str, password: str,
             wrap: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """``hanode user add`` through the real CLI, the password on stdin."""
    return subprocess.run([*wrap, *hanode_command(), "user", "add", user, "--password-stdin",
                                              "--config", str(config)],
                          input=password + "\n", capture_output=True, text=True, timeout=30)


def start_hanode(etcd_url: str, base: Path, *, workers: int = 1, smb_extra: str = "",
                 share_extra: str = "", log_level: str = "info", cluster: str | None = None,
                 node: str = "n1", share: Path | None = None,
                 env: dict[str, str] | None = None, cluster_extra: str = "",
                 extra_shares: str = "", listen: str = "127.0.0.1",
                 port: int | None = None, wrap: Sequence[str] = ()) -> Target:
    """Write a config, add the user through the CLI, start ``hanode smb``.

    A second node of the same cluster passes the first one's cluster name
    and share directory (shared storage) and its own node name.  ``wrap``
    (``ip netns exec NS``) runs the CLI and the server in a network namespace,
    where they listen on ``listen``:``port``.
    """
    base.mkdir(parents=True, exist_ok=True)
    if share is None:
        share = base / "share"
        share.mkdir()
    port = port or free_port()
    config = base / "hanode.toml"
    config.write_text(f"""
[cluster]
name = "{cluster or 't' + uuid.uuid4().hex[:8]}"
etcd = ["{etcd_url}"]
{cluster_extra}

[node]
name = "{node}"
state_dir = "{base / 'state'}"

[smb]
listen = "{listen}"
port = {port}
workers = {workers}
{smb_extra}

[[share]]
name = "{SHARE}"
path = "{share}"
{share_extra}

{extra_shares}

[log]
level = "{log_level}"
""")
    added = add_user(config, USER, PASSWORD, wrap)
    if added.returncode != 0:
        raise RuntimeError(f"hanode user add failed: {added.stderr}")
    log = base / "hanode-smb.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*wrap, *hanode_command(), "smb", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    return _listening(Target("hanode", port, share, log, proc, config=config, host=listen), wrap)


SMBD_CONF = """[global]
  server role = standalone server
  workgroup = WORKGROUP
  netbios name = HNSMBD{tag}
  interfaces = {listen}
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  private dir = {base}/private
  lock directory = {base}/lock
  state directory = {base}/state
  cache directory = {base}/cache
  pid directory = {base}/pid
  ncalrpc dir = {base}/ncalrpc
  log file = {base}/log.smbd
  passdb backend = tdbsam:{base}/private/passdb.tdb
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  server min protocol = SMB2_02
  kernel oplocks = no
  posix locking = no
  kernel share modes = no
{global_extra}
[{share_name}]
  path = {share}
  read only = no
{share_extra}
"""


@contextmanager
def running_hanode(etcd_url: str, base: Path, **options) -> Iterator[Target]:
    """``hanode smb`` for the length of a test; afterwards its log must hold no
    traceback (a worker that died on a bad request would leave one)."""
    target = start_hanode(etcd_url, base, **options)
    try:
        yield target
    finally:
        stop(target)
    assert "Traceback" not in target.log_text(), target.log_text()[-4000:]


def start_smbd(base: Path, *, global_extra: str = "", share_extra: str = "",
               listen: str = "127.0.0.1", port: int | None = None,
               wrap: Sequence[str] = ()) -> Target:
    """A private smbd on a free loopback port, configured like Samba's selftest
    shares; ``wrap`` (``ip netns exec NS``) runs it in a network namespace,
    where it listens on ``listen``:``port``."""
    smbd = shutil.which("smbd") or "/usr/sbin/smbd"
    base.mkdir(parents=True, exist_ok=True)
    for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "share"):
        (base / sub).mkdir()
    port = port or free_port()
    conf = base / "smb.conf"
    conf.write_text(SMBD_CONF.format(
        tag=uuid.uuid4().hex[:6].upper(), port=port, base=base, share=base / "share",
        listen=listen,
        share_name=SHARE, global_extra=global_extra, share_extra=share_extra))
    added = subprocess.run(["smbpasswd", "-c", str(conf), "-a", "-s", USER],
                           input=f"{PASSWORD}\n{PASSWORD}\n", capture_output=True, text=True,
                           timeout=30)
    if added.returncode != 0:
        raise RuntimeError(f"smbpasswd failed: {added.stderr}")
    log = base / "smbd.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*wrap, smbd, "--foreground", "--no-process-group", "-s",
                                 str(conf), "--debug-stdout"], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return _listening(Target("smbd", port, base / "share", log, proc, config=conf,
                             host=listen), wrap)


def stop(target: Target) -> None:
    _stop_group(target.proc)
    if target.config is not None:
        _stop_helpers_of(target.config)


def _stop_helpers_of(config: Path) -> None:
    """Kill what a server started outside its process group: smbd 4.17 spawns
    samba-dcerpcd (and its rpcd_* workers) on the first RPC, in a session of its
    own, so it outlives smbd's group; they name smbd's config file."""
    mark = f"--configfile={config}"
    for proc in psutil.process_iter(["cmdline"]):
        if mark in (proc.info["cmdline"] or []):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


# -- smbclient ------------------------------------------------------------------------------


def smbclient(target: Target, commands: str, *extra: str, password: str | None = None,
              anonymous: bool = False, timeout: float = 120,
              share: str | None = None) -> subprocess.CompletedProcess:
    """Run smbclient's ``-c`` commands; ``anonymous`` logs on with no user (-N);
    ``share`` names another share of the server than the test share."""
    creds = f"{target.user}%{target.password if password is None else password}"
    who = ["-N"] if anonymous else ["-U", creds]
    unc = target.unc if share is None else f"//127.0.0.1/{share}"
    return subprocess.run(["smbclient", "-p", str(target.port), unc, *who,
                           *extra, "-c", commands],
                          capture_output=True, text=True, timeout=timeout)


# -- hanode's worker processes ---------------------------------------------------------------


def worker_processes(target: Target) -> list[psutil.Process]:
    """The worker processes under ``hanode smb``, as they are now."""
    return psutil.Process(target.proc.pid).children(recursive=True)


def listening_workers(target: Target) -> int:
    """How many worker processes have their listening socket bound."""
    count = 0
    for worker in worker_processes(target):
        try:
            conns = worker.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        count += any(c.status == psutil.CONN_LISTEN and c.laddr.port == target.port
                     for c in conns)
    return count


# -- smbtorture ------------------------------------------------------------------------------

# A test's name may hold spaces (smb2.delete-on-close-perms' "CREATE Existing");
# a failure's reason follows it after " [".
_RESULT = re.compile(r"^(success|failure|error|skip|xfail|uxsuccess): (.+?)(?: \[)?$", re.M)


@dataclass
class TortureRun:
    target: str
    test: str
    returncode: int
    output: str
    results: dict[str, str] = field(default_factory=dict)


def run_smbtorture(target: Target, test: str, *extra: str, timeout: float = 600) -> TortureRun:
    """Run one smbtorture suite or test; ``results`` maps test name to outcome."""
    try:
        done = subprocess.run(["smbtorture", "-p", str(target.port),
                               f"//127.0.0.1/{target.share_name}", "-U", target.credentials,
                               *extra, test], capture_output=True, text=True, timeout=timeout)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        code = -1
    results = {m.group(2): m.group(1) for m in _RESULT.finditer(output)}
    return TortureRun(target.name, test, code, output, results)


def regressions(hanode: TortureRun, smbd: TortureRun) -> list[str]:
    """Tests smbd passes and hanode does not (missing counts as not passing)."""
    return sorted(f"{name}: {hanode.results.get(name, 'missing')}"
                  for name, outcome in smbd.results.items()
                  if outcome == "success" and hanode.results.get(name) != "success")


class SmbdBaseline:
    """smbd's runs of smbtorture suites, each run once per session and shared by
    every test that compares hanode with it (smbd's outcome of a suite does not
    depend on which hanode test asks).  Each run has a fresh private smbd of
    its own, so up to ``jobs`` go on at once, beside hanode's runs, without
    meeting on a share."""

    def __init__(self, base: Path, *, jobs: int = 3) -> None:
        self._base = base
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix="smbd-baseline")
        self._runs: dict[str, Future[TortureRun]] = {}

    def start(self, suite: str, *, timeout: float = 600) -> Future[TortureRun]:
        """smbd's run of ``suite``, started now unless it already was."""
        if suite not in self._runs:
            self._runs[suite] = self._pool.submit(self._run, suite, timeout)
        return self._runs[suite]

    def _run(self, suite: str, timeout: float) -> TortureRun:
        target = start_smbd(self._base / suite)
        try:
            return run_smbtorture(target, suite, timeout=timeout)
        finally:
            stop(target)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ParityRuns:
    """smbtorture suites run against hanode, each on a fresh ``hanode smb`` of
    its own, up to ``jobs`` at once, and against smbd's baseline.  Most of a
    suite's time is spent waiting (break timeouts, smbtorture's own timeouts),
    not computing, so suites started together finish in about the time of the
    longest.  Each server's log must hold no traceback, as with ``running_hanode``."""

    def __init__(self, etcd_url: str, base: Path, smbd: SmbdBaseline, *, jobs: int = 3) -> None:
        self._etcd_url = etcd_url
        self._base = base
        self._smbd = smbd
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix="hanode-suite")
        self._runs: dict[tuple[str, int], Future[TortureRun]] = {}

    def start(self, suite: str, *, workers: int, timeout: float) -> Future[TortureRun]:
        """hanode's run of ``suite`` on ``workers`` workers (and smbd's), started
        now unless it already was."""
        self._smbd.start(suite, timeout=timeout)
        key = (suite, workers)
        if key not in self._runs:
            self._runs[key] = self._pool.submit(self._run, suite, workers, timeout)
        return self._runs[key]

    def check(self, suite: str, known_gaps: Mapping[str, str] | None = None, *,
              workers: int, timeout: float) -> None:
        """``assert_parity`` of hanode's run of ``suite`` with smbd's."""
        ours = self.start(suite, workers=workers, timeout=timeout).result()
        assert_parity(ours, self._smbd.start(suite, timeout=timeout).result(), known_gaps)

    def _run(self, suite: str, workers: int, timeout: float) -> TortureRun:
        with running_hanode(self._etcd_url, self._base / f"{suite}-{workers}w",
                            workers=workers) as target:
            # Node-local state (share modes, locks) has to hold across all the
            # workers, so every one of them must be serving before the suite starts.
            wait_for(lambda: listening_workers(target) == workers, 15,
                     f"{workers} listening workers")
            return run_smbtorture(target, suite, timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _known(suite: str, failure: str, known_gaps: Mapping[str, str]) -> bool:
    # A gap may be written with the suite's name in front of the test's, or without.
    name = failure.split(":")[0]
    return name in known_gaps or f"{suite}.{name}" in known_gaps


def assert_parity(ours: TortureRun, theirs: TortureRun,
                  known_gaps: Mapping[str, str] | None = None) -> None:
    """Fail unless hanode passes every test of the suite that smbd passes, but
    for ``known_gaps`` (test name to the reason it cannot pass yet)."""
    suite = theirs.test
    if not theirs.results:
        raise AssertionError(f"smbd ran no test of {suite}:\n{theirs.output[-3000:]}")
    print(f"{suite}: hanode {_passed(ours)}/{len(ours.results)}, "
          f"smbd {_passed(theirs)}/{len(theirs.results)}")
    unexpected = [m for m in regressions(ours, theirs)
                  if not _known(suite, m, known_gaps or {})]
    if unexpected:
        raise AssertionError("\n".join(unexpected) + "\n" + ours.output[-4000:])


def _passed(run: TortureRun) -> int:
    return sum(1 for outcome in run.results.values() if outcome == "success")
