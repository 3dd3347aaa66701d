"""The agent's worker probe against real ``hanode smb`` workers: a NEGOTIATE answered by
the worker asked, and no answer from a stopped one."""

from __future__ import annotations

import os
import signal

import trio

from hanode import config as config_mod
from smb import probe
from tests.smb import harness


def ask_all(state_dir: str, workers: int, timeout: float) -> list[str | None]:
    async def main() -> list[str | None]:
        out = []
        for index in range(workers):
            with trio.move_on_after(timeout):
                out.append(await probe.ask(probe.address(state_dir, index)))
                continue
            out.append("timeout")
        return out
    return trio.run(main)


def test_each_worker_answers_its_probe_and_a_stopped_one_does_not(two_workers):
    cfg = config_mod.load(two_workers.config)
    state_dir = cfg.node.state_dir
    assert ask_all(state_dir, 2, 2.0) == [None, None]
    # No such worker: refused at once, with the reason.
    (missing,) = ask_all(state_dir + "-other", 1, 2.0)
    assert missing is not None and missing.startswith("not listening")

    by_index = {int(p.cmdline()[-1]): p for p in harness.worker_processes(two_workers)}
    os.kill(by_index[0].pid, signal.SIGSTOP)
    try:
        assert ask_all(state_dir, 2, 0.5) == ["timeout", None]
    finally:
        os.kill(by_index[0].pid, signal.SIGCONT)
    assert ask_all(state_dir, 2, 2.0) == [None, None]


def test_reply_checks():
    frame = probe.request()
    assert probe.reply_size(frame) == len(frame)
    # A request is no reply: right magic, but the dialect field holds the dialect count.
    assert probe.reply_problem(b"\0\0\0\4abcd") == "reply is not an SMB2 message"
