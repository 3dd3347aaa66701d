"""Tell systemd how the agent is doing (the sd_notify protocol).

``hanode-agent.service`` is ``Type=notify`` with a watchdog: systemd counts
the agent as started only after READY=1 (sent once it has joined etcd), and
kills and restarts it when WATCHDOG=1 stops arriving, which is what a hung
main loop looks like from outside.  The protocol is one datagram of
``KEY=value`` lines to the AF_UNIX socket named in ``$NOTIFY_SOCKET``; a name
starting with ``@`` is in the abstract namespace.  Without that variable
(a terminal, a test, another supervisor) every call is a quiet no-op, so the
agent never needs to know how it was started.

Sending never blocks and never raises: a lost notification is retried by the
next one, and a full or vanished socket must not take the agent down.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable, Mapping

log = logging.getLogger(__name__)


def socket_address(name: str) -> str:
    """The address to sendto() for a $NOTIFY_SOCKET value ('@' means abstract)."""
    return "\0" + name[1:] if name.startswith("@") else name


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 messages, or None when systemd wants none.

    systemd sets $WATCHDOG_USEC to the full timeout; petting at half of it
    leaves a whole half for a slow loop iteration.  $WATCHDOG_PID, when set,
    names the one process the timeout is meant for (not our children).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    wanted_pid = environ.get("WATCHDOG_PID", "")
    if wanted_pid and wanted_pid != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2_000_000


def message(**fields: str) -> bytes:
    """One notification datagram: ``message(READY="1", STATUS="x")``."""
    for key, value in fields.items():
        if "\n" in value:
            raise ValueError(f"sd_notify {key} must be one line")
    return "\n".join(f"{key}={value}" for key, value in fields.items()).encode()


class Notifier:
    """The agent's line to systemd; every method is safe to call at any time."""

    def __init__(self, name: str | None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.address = socket_address(name) if name else None
        self.interval = interval if self.address else None
        self._clock = clock
        self._last_pet: float | None = None
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one datagram; False when there is no socket or it was not delivered."""
        if self.address is None:
            return False
        data = message(**fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(data, socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields = {"READY": "1", "MAINPID": str(os.getpid())}
        if status is not None:
            fields["STATUS"] = status
        return self.send(**fields)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str | None = None) -> bool:
        fields = {"STOPPING": "1"}
        if status is not None:
            fields["STATUS"] = status
        return self.send(**fields)

    def watchdog(self) -> bool:
        """Pet the watchdog, at most once per interval however often it is called.

        The agent calls this from every turn of its main loop, so the loop's
        own liveness is what systemd sees; the rate limit keeps a fast loop
        from flooding the socket.
        """
        if self.interval is None:
            return False
        now = self._clock()
        if self._last_pet is not None and now - self._last_pet < self.interval:
            return False
        if self.send(WATCHDOG="1"):
            self._last_pet = now
            return True
        return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
