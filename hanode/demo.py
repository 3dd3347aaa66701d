"""``hanode demo``: the failover experiment as one command, on one machine.

A namespace lab (see hanode.lab: etcd, N nodes each running the agent and its
SMB workers over one shared directory, a client namespace, all on a private
bridge) and one democlient process per client, each copying its own file to
``\\\\<vip>\\test`` with a durable handle.  When every copy is past KILL_AT,
the node serving the VIP dies the chosen way; the clients reconnect and
reclaim.  The demo watches it all, shows a progress line, and reports what
happened when, how long each copy stalled, and whether every byte arrived.

Everything runs in namespaces the lab creates; they and every process in
them are removed at the end, also after Ctrl-C, SIGTERM or an error (unless
--keep asks to leave the lab up for a look).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from hanode.errors import UserError
from hanode.lab import Lab, LabError, wait_for
from hanode.leadership import healthy_standby
from hanode.takeover import ANNOUNCE_ROUNDS

KILL_AT = 0.35          # share of every copy done before the serving node dies
# A small copy is paced to last this long, so that the kill lands mid-copy
# (a 256 MiB copy takes longer anyway); writes of size/64, 64 KiB to 1 MiB.
MIN_COPY_SECONDS = 6.0
WORKERS = 2
USER = "demo"
PAUSED_AFTER = 0.25     # no write acknowledged for this long: the line says PAUSED
TICK = 0.02             # the watch loop's pace
HOLDER_POLL = 0.1       # how often it asks the nodes who holds the VIP (cheaply: 2 cores)
KILLS = {
    "hard": "killed hard (cable pulled, every process SIGKILLed)",
    "graceful": "stopped gracefully (SIGTERM to its agent)",
    "partition": "cut off from etcd (nftables)",
    "switchover": "handed over with hanode switchover",
    "rolling": "restarted node by node, as the Ansible handler does",
}
# A rolling restart takes each node in turn: about this long per node on a
# busy 2-core machine (switchover, stop, start, workers up), so the copy is
# paced to outlast all of them.
ROLL_STEP_SECONDS = 15.0
# How long a restarted node may take to rejoin as a healthy standby.
REJOIN_TIMEOUT = 60.0
_SIZE_RE = re.compile(r"^(\d+)([KMG]?)(i?B)?$", re.IGNORECASE)
_CLAIM_RE = re.compile(r"^(\S+ \S+) INFO \S+: leader \(term (\d+)\), VIP .* claimed, "
                       r"(\d+) announcement frames .* (\d+) clients tickled")


def parse_size(text: str) -> int:
    """``256M`` and friends (K/M/G are powers of 1024) to bytes."""
    match = _SIZE_RE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise UserError(f"demo: --size {text!r} is not a size like 256M, 64K or 1G")
    return int(match.group(1)) * 1024 ** " KMG".index((match.group(2) or " ").upper())


@dataclass
class Client:
    name: str
    proc: subprocess.Popen
    size: int
    acked: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    error: str | None = None

    def first(self, ev: str, after: float = float("-inf")) -> dict[str, Any] | None:
        return next((e for e in self.events if e["ev"] == ev and e["t"] >= after), None)


class Progress:
    """The live line: total MB/s over the last second, per-client percent, PAUSED."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.samples: list[tuple[float, int]] = []
        self.last_ack = time.monotonic()
        self.last_line = 0.0

    def update(self, clients: list[Client], note: str) -> None:
        now = time.monotonic()
        total = sum(c.acked for c in clients)
        if self.samples and total > self.samples[-1][1]:
            self.last_ack = now
        self.samples = [s for s in self.samples if now - s[0] <= 1.0] + [(now, total)]
        if now - self.last_line < (0.1 if self.tty else 1.0):
            return
        self.last_line = now
        t0, b0 = self.samples[0]
        rate = (total - b0) / (now - t0) / 1e6 if now > t0 else 0.0
        running = total > 0 and any(c.done is None and c.error is None for c in clients)
        paused = running and now - self.last_ack > PAUSED_AFTER
        parts = " ".join(f"{c.name} {100 * c.acked // c.size:3d}%" for c in clients)
        state = "PAUSED" if paused else f"{rate:7.1f} MB/s"
        line = f"{state:>12}  {parts}  {note}"
        if self.tty:
            self.out.write("\r\x1b[K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


class Demo:
    def __init__(self, lab: Lab, clients: int, size: int, kill: str, out: TextIO,
                 reconnect: str = "eager"):
        self.lab = lab
        self.reconnect = reconnect  # the clients' --reconnect (hanode.democlient)
        self.n_clients = clients
        self.size = size
        self.kill = kill
        self.out = out
        self.password = secrets.token_urlsafe(12)
        self.clients: list[Client] = []
        self.node_from: str | None = None
        self.node_to: str | None = None
        self.started = 0.0
        self.killed_at: float | None = None
        self.killed_wall = 0.0
        self.move_seen: float | None = None  # when the watch loop saw another holder
        self.holder_polled = 0.0
        self.switchover: subprocess.Popen | None = None
        # The rolling restart's driver and what each of its steps did, when.
        self.roller: threading.Thread | None = None
        self.steps: list[dict[str, Any]] = []
        self.roll_error: str | None = None

    @property
    def copy_seconds(self) -> float:
        """How long a copy is paced to last: long enough for the kill to land mid-copy,
        and for a rolling restart, for every node's step after it."""
        if self.kill == "rolling":
            return max(MIN_COPY_SECONDS, len(self.lab.nodes) * ROLL_STEP_SECONDS / (1 - KILL_AT))
        return MIN_COPY_SECONDS

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- running ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        lab = self.lab
        lab.add_user(USER, self.password)
        self.node_from = lab.start_agents()
        self.say(f"{self.node_from} holds VIP {lab.vip_ip}; {self.n_clients} client(s) copy "
                 f"{_mib(self.size)} each to \\\\{lab.vip_ip}\\test")
        self.started = time.monotonic()
        self.clients = [self._start_client(i) for i in range(1, self.n_clients + 1)]
        try:
            self._watch()
        finally:
            for client in self.clients:
                if client.proc.poll() is None:
                    client.proc.kill()
                client.proc.wait()
            if self.roller is not None:
                self.roller.join()
        res = self.result()
        if self.switchover is not None:
            out, err = self.switchover.communicate(timeout=15)
            res["switchover"] = {"exit": self.switchover.returncode,
                                 "output": (out + err).strip()}
            res["ok"] = res["ok"] and self.switchover.returncode == 0
        return res

    def _start_client(self, i: int) -> Client:
        lab = self.lab
        cmd = ["ip", "netns", "exec", lab.client_ns, sys.executable, "-u", "-m",
               "hanode.democlient", "--server", lab.vip_ip, "--port", str(lab.port),
               "--user", USER, "--name", f"client{i}.bin", "--size", str(self.size),
               "--seed", str(i), "--chunk", str(min(max(self.size // 64, 64 << 10), 1 << 20)),
               "--pace", str(self.size / self.copy_seconds), "--reconnect", self.reconnect]
        with open(lab.workdir / f"client{i}.log", "ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err, text=True)
        assert proc.stdin is not None
        proc.stdin.write(self.password + "\n")
        proc.stdin.close()
        return Client(f"client{i}", proc, self.size)

    def _watch(self) -> None:
        sel = selectors.DefaultSelector()
        for client in self.clients:
            assert client.proc.stdout is not None
            sel.register(client.proc.stdout, selectors.EVENT_READ, client)
        progress = Progress(sys.stderr)
        # Generous: a copy slower than 2 MB/s on top of a minute is a failure.
        deadline = time.monotonic() + 60 + self.copy_seconds + self.size * self.n_clients / 2e6
        open_pipes = len(self.clients)
        try:
            while open_pipes:
                if time.monotonic() > deadline:
                    raise LabError("the copies did not finish in time")
                for key, _ in sel.select(TICK):
                    client: Client = key.data
                    line = key.fileobj.readline()  # type: ignore[union-attr]
                    if not line:
                        sel.unregister(key.fileobj)
                        open_pipes -= 1
                        continue
                    self._event(client, json.loads(line))
                self._step()
                progress.update(self.clients, self._note())
        finally:
            sel.close()
            progress.finish()

    def _event(self, client: Client, event: dict[str, Any]) -> None:
        client.events.append(event)
        if event["ev"] == "progress":
            client.acked = event["acked"]
        elif event["ev"] == "done":
            client.done = event
        elif event["ev"] == "error":
            client.error = event["message"]

    def _note(self) -> str:
        if self.killed_at is None:
            return ""
        if self.move_seen is None:
            return f"{self.node_from} {self.kill} at +{self.killed_at - self.started:.1f} s; " \
                   f"waiting for a new leader"
        return f"{self.node_to} took over"

    def _step(self) -> None:
        """Kill when every copy is far enough; then watch for the new VIP holder."""
        if self.killed_at is None:
            if all(c.acked >= KILL_AT * c.size for c in self.clients) and \
                    all(c.done is None for c in self.clients):
                self._kill()
            return
        if self.move_seen is None and time.monotonic() - self.holder_polled >= HOLDER_POLL:
            self.holder_polled = time.monotonic()
            holder = next((n for n in self.lab.nodes
                           if n != self.node_from and self.lab.holds_vip(n)), None)
            if holder is not None:
                self.move_seen, self.node_to = time.monotonic(), holder

    def _kill(self) -> None:
        lab, node = self.lab, self.node_from
        assert node is not None
        self.killed_at, self.killed_wall = time.monotonic(), time.time()
        if self.kill == "hard":
            lab.kill_node(node)
        elif self.kill == "graceful":
            lab.terminate_agent(node)
        elif self.kill == "partition":
            lab.cut_from_etcd(node)
        elif self.kill == "rolling":
            # In a thread of its own: its steps block for seconds, and the
            # clients' pipes must be read meanwhile.  Joined by run().
            self.roller = threading.Thread(target=self._roll, name="rolling-restart")
            self.roller.start()
        else:
            self.switchover = lab.cli_start("switchover")

    def _roll(self) -> None:
        """The Ansible handler's rolling restart (serial: 1), node by node in
        inventory order: the node that holds the VIP first hands it over with
        ``hanode switchover``; then its agent gets SIGTERM, is started again
        once it has exited, and the next node waits until this one is a
        healthy standby again."""
        lab = self.lab
        try:
            for name in lab.nodes:
                step: dict[str, Any] = {"node": name, "started": time.monotonic(),
                                        "leader": lab.holds_vip(name)}
                self.steps.append(step)
                if step["leader"]:
                    moved = lab.cli("switchover")
                    step["switchover_exit"] = moved.returncode
                    if moved.returncode != 0:
                        raise LabError(f"switchover off {name} failed: "
                                       f"{(moved.stdout + moved.stderr).strip()[-200:]}")
                lab.terminate_agent(name).wait(timeout=30)
                step["stopped"] = time.monotonic()
                lab.start_agent(name)
                wait_for(functools.partial(self._healthy_standby, name), REJOIN_TIMEOUT,
                         f"{name} to rejoin as a healthy standby", interval=0.5)
                step["rejoined"] = time.monotonic()
        except (LabError, subprocess.TimeoutExpired, ValueError) as exc:
            self.roll_error = str(exc)  # ValueError: etcd's answer was no JSON

    def _healthy_standby(self, name: str) -> bool:
        record = self.lab.read_etcd(f"nodes/{name}").get(f"nodes/{name}")
        return healthy_standby("", [record]) == name

    # -- the report ---------------------------------------------------------------------

    def _takeover_log(self) -> tuple[float, int, int, int] | None:
        """(when, term, announcement frames per round, clients tickled) of the new leader's
        claim, from its log: the agent logs it once the first round is out."""
        if self.node_to is None or self.killed_at is None:
            return None
        for line in self.lab.nodes[self.node_to].log.read_text(errors="replace").splitlines():
            match = _CLAIM_RE.match(line)
            if not match:
                continue
            wall = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if wall >= self.killed_wall - 0.001:
                return (self.killed_at + wall - self.killed_wall, int(match.group(2)),
                        int(match.group(3)), int(match.group(4)))
        return None

    def result(self) -> dict[str, Any]:
        killed = self.killed_at

        def rel(t: float | None) -> float | None:
            return None if t is None or killed is None else round(t - killed, 3)

        claim = self._takeover_log()
        claimed_at, term, frames, tickled = claim if claim else (None, None, None, None)
        phases: list[dict[str, Any]] = []
        if killed is not None:
            phases.append({"at": 0.0, "event": f"{self.node_from} {KILLS[self.kill]}"})
        if claimed_at is not None:
            phases.append({"at": rel(claimed_at),
                           "event": f"{self.node_to} claimed VIP {self.lab.vip_ip} (term {term}), "
                                    f"announced it, tickled {tickled} client(s)"})
        clients = []
        for c in self.clients:
            since = killed if killed is not None else float("-inf")
            lost, connected = c.first("lost", since), c.first("connected", since)
            reclaimed, reopened = c.first("reclaimed", since), c.first("reopened", since)
            for ev, what in ((lost, "connection lost"), (connected, "reconnected"),
                             (reclaimed, "reclaimed its durable handle (DH2C)"),
                             (reopened, "could NOT reclaim; reopened the file")):
                if ev is not None:
                    status = f" (status {ev['status']})" if "status" in ev else ""
                    phases.append({"at": rel(ev["t"]), "event": f"{c.name} {what}{status}",
                                   "client": c.name})
            stored = self.lab.share_dir / f"{c.name}.bin"
            stored_sha = _sha256(stored) if stored.exists() else None
            source_sha = c.done["sha256"] if c.done else None
            clients.append({
                "name": c.name,
                "completed": c.done is not None and c.done["bytes"] == self.size,
                "error": c.error,
                "reconnected": connected is not None,
                "reclaimed": reclaimed is not None and reopened is None,
                "stall_seconds": round(c.done["longest_gap"], 3) if c.done else None,
                "sha256_source": source_sha,
                "sha256_stored": stored_sha,
                "sha256_match": source_sha is not None and source_sha == stored_sha,
            })
        steps = self._step_figures()
        for step in steps:
            phases.append({"at": step["at"], "event": f"rolling restart: {step['node']}"
                           + (" (leader: switchover first)" if step["leader"] else "")})
        phases.sort(key=lambda p: p["at"])
        stalls = [c["stall_seconds"] for c in clients if c["stall_seconds"] is not None]
        sha_ok = bool(clients) and all(c["sha256_match"] for c in clients)
        moved = self.node_to is not None and self.node_to != self.node_from
        ok = (sha_ok and moved and all(c["completed"] and c["reclaimed"] for c in clients))
        if self.kill == "rolling":
            ok = ok and self.roll_error is None and len(steps) == len(self.lab.nodes) \
                and all(step["rejoined_after"] is not None for step in steps)
        return {
            "ok": ok,
            "kill": self.kill,
            "nodes": len(self.lab.nodes),
            "size": self.size,
            "node_from": self.node_from,
            "node_to": self.node_to,
            "vip": self.lab.vip_ip,
            "vip_claimed_after": rel(claimed_at),
            "announcement_rounds": ANNOUNCE_ROUNDS if moved else 0,
            "announcement_frames_per_round": frames,
            "clients_tickled": tickled,
            "stall_seconds": max(stalls) if stalls else None,
            "sha256_match": sha_ok,
            "phases": phases,
            "clients": clients,
            "steps": steps,
            "roll_error": self.roll_error,
            # The longest stall before anything was done to the cluster: what
            # the machine's load alone costs, to set the figures above against.
            "stall_before_kill_seconds": max(
                (e["seconds"] for c in self.clients for e in c.events
                 if e["ev"] == "stall" and killed is not None and e["since"] < killed),
                default=0.0),
        }

    def _step_figures(self) -> list[dict[str, Any]]:
        """Per step of a rolling restart: when it began (after the kill), whether
        the node led, how long until it was a healthy standby again, and the
        longest stall of any copy that began during the step."""
        out = []
        stalls = [e for c in self.clients for e in c.events if e["ev"] == "stall"]
        for i, step in enumerate(self.steps):
            end = self.steps[i + 1]["started"] if i + 1 < len(self.steps) else float("inf")
            during = [e["seconds"] for e in stalls if step["started"] <= e["since"] < end]
            rejoined = step.get("rejoined")
            out.append({
                "node": step["node"],
                "leader": step["leader"],
                "at": round(step["started"] - (self.killed_at or step["started"]), 3),
                "rejoined_after": None if rejoined is None else round(rejoined - step["started"], 3),
                "stall_seconds": max(during, default=0.0),
            })
        return out


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size} bytes"


def render(res: dict[str, Any]) -> str:
    lines = [f"{res['node_from']} {KILLS[res['kill']]}; VIP {res['vip']} moved to "
             f"{res['node_to'] or 'NOBODY'}"]
    for phase in res["phases"]:
        lines.append(f"  +{phase['at']:6.3f} s  {phase['event']}")
    if "switchover" in res:
        lines.append(f"  hanode switchover said: {res['switchover']['output']}")
    for step in res.get("steps", []):
        back = step["rejoined_after"]
        lines.append(f"  restart of {step['node']}{' (leader)' if step['leader'] else ''}: "
                     f"longest stall {step['stall_seconds']:.3f} s, "
                     + (f"a healthy standby again after {back:.1f} s" if back is not None
                        else "never a healthy standby again"))
    if res.get("roll_error"):
        lines.append(f"  the rolling restart stopped: {res['roll_error']}")
    if res["node_to"]:
        lines.append(f"  {res['node_to']} announced the VIP in {res['announcement_rounds']} "
                     f"rounds ({res['announcement_frames_per_round']} GARP frames each) and "
                     f"tickled {res['clients_tickled']} client connection(s)")
    lines.append("")
    lines.append(f"  {'CLIENT':8} {'STALL':>8}  {'RECLAIM':8} {'SHA256 SOURCE':16} "
                 f"{'SHA256 STORED':16} RESULT")
    for c in res["clients"]:
        stall = f"{c['stall_seconds']:.3f} s" if c["stall_seconds"] is not None else "-"
        verdict = "match" if c["sha256_match"] else (c["error"] or "MISMATCH")
        lines.append(f"  {c['name']:8} {stall:>8}  {'DH2C' if c['reclaimed'] else 'no':8} "
                     f"{(c['sha256_source'] or '-')[:16]:16} {(c['sha256_stored'] or '-')[:16]:16} "
                     f"{verdict}")
    stall = res["stall_seconds"]
    lines.append("")
    lines.append(("OK: every copy completed and matched; " if res["ok"] else "FAILED: ")
                 + (f"longest stall {stall:.3f} s" if stall is not None else "no copy finished"))
    return "\n".join(lines)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    """0 when every copy completed, was reclaimed and matched; 1 otherwise; 2 bad usage."""
    size = parse_size(args.size)
    if os.geteuid() != 0:
        raise UserError("demo: run as root (it creates network namespaces)")
    if not 2 <= args.nodes <= 9:
        raise UserError("demo: --nodes must be 2 to 9 (someone has to take over)")
    if not 1 <= args.clients <= 20:
        raise UserError("demo: --clients must be 1 to 20")
    # Ctrl-C and SIGTERM both end the run through the cleanup below (also when
    # started from a shell that had SIGINT ignored, as for background jobs).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    out = sys.stderr if args.json else sys.stdout
    lab = Lab(args.nodes, workers=WORKERS, cluster="demo", lease_ttl=args.lease_ttl)
    res = None
    try:
        print(f"lab {lab.tag}: etcd {lab.etcd_url}; nodes "
              + ", ".join(f"{n.name} {n.ip}" for n in lab.nodes.values())
              + f"; VIP {lab.vip}; clients in {lab.client_ns}", file=out, flush=True)
        lab.up()
        res = Demo(lab, args.clients, size, args.kill, out, args.reconnect).run()
    except LabError as exc:
        print(f"hanode: demo: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("hanode: demo: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if args.logs:
            _save_logs(lab, Path(args.logs))
        if args.keep:
            _print_keep(lab, out)
        else:
            lab.down()
    if res is None:
        return 1
    print(json.dumps(res) if args.json else render(res), flush=True)
    return 0 if res["ok"] else 1


def _save_logs(lab: Lab, to: Path) -> None:
    """Copy the lab's logs (agents, listeners, clients, etcd) to a directory that
    outlives the lab, so a failed trial can be read afterwards."""
    to.mkdir(parents=True, exist_ok=True)
    for log in lab.workdir.glob("*.log"):
        shutil.copyfile(log, to / log.name)


def _print_keep(lab: Lab, out: TextIO) -> None:
    namespaces = " ".join(lab.namespaces)
    print(f"\nthe lab stays up (--keep); look with\n"
          f"  ip netns exec {lab.client_ns} {sys.executable} -m hanode.cli status "
          f"--etcd {lab.etcd_url} "
          f"--cluster {lab.cluster}\n"
          f"and remove it with\n"
          f"  for ns in {namespaces}; do ip netns pids $ns | xargs -r kill -9; "
          f"ip netns del $ns; done; rm -rf {lab.workdir}", file=out, flush=True)
