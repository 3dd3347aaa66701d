"""The credit window of one connection (MS-SMB2 3.3.1.1, 3.3.5.2.3).

Pure bookkeeping: which MessageIds the client may still use, and how many
credits to grant so that it never holds more than a bound nor runs dry.
"""

from __future__ import annotations

from smb.wire.crypto import Dialect

MAX_CREDITS = 8192


class CreditWindow:
    def __init__(self, max_credits: int = MAX_CREDITS):
        self.max_credits = max_credits
        self.low = 0    # every id below this is spent
        self.high = 1   # ids below this were granted; a new connection holds one credit
        self._spent: set[int] = set()  # spent ids in [low, high)

    @property
    def available(self) -> int:
        """Credits the client holds and has not spent yet."""
        return self.high - self.low - len(self._spent)

    def consume(self, message_id: int, charge: int) -> bool:
        """Spend ids message_id .. message_id + charge - 1.

        False if any of them was not granted or is already spent."""
        charge = max(charge, 1)
        if message_id < self.low or message_id + charge > self.high:
            return False
        if charge == 1 and message_id == self.low:
            # The usual case, one request after the other: ``low`` is never
            # spent (the loop below moves past spent ids), so nothing to check.
            spent = self._spent
            self.low += 1
            while self.low in spent:
                spent.discard(self.low)
                self.low += 1
            return True
        ids = range(message_id, message_id + charge)
        if any(i in self._spent for i in ids):
            return False
        self._spent.update(ids)
        while self.low in self._spent:
            self._spent.discard(self.low)
            self.low += 1
        return True

    def grant(self, requested: int) -> int:
        """Credits to return in a response: what was asked, within the bound, and never
        leaving the client with none."""
        room = self.max_credits - self.available
        n = max(0, min(requested, room))
        if n == 0 and self.available == 0:
            n = 1
        self.high += n
        return n


def required_charge(payload: int) -> int:
    """CreditCharge needed for ``payload`` bytes with LARGE_MTU (MS-SMB2 3.1.5.2)."""
    return (max(payload, 1) - 1) // 65536 + 1


def _u32(body: bytes | memoryview, offset: int) -> int:
    if len(body) < offset + 4:
        return 0
    return int.from_bytes(body[offset:offset + 4], "little")


def expected_payload(command: int, body: bytes | memoryview) -> int:
    """The larger of request and response payload a command carries (for the charge check)."""
    if command in (0x08, 0x09, 0x0F, 0x11):  # READ, WRITE, CHANGE_NOTIFY, SET_INFO
        return _u32(body, 4)
    if command == 0x10:  # QUERY_INFO: output length vs input buffer
        return max(_u32(body, 4), _u32(body, 12))
    if command == 0x0E:  # QUERY_DIRECTORY
        return _u32(body, 28)
    if command == 0x0B:  # IOCTL
        return max(_u32(body, 28) + _u32(body, 40), _u32(body, 32) + _u32(body, 44))
    return 0


def charge_refused(dialect: int, command: int, credit_charge: int,
                   body: bytes | memoryview) -> bool:
    """Whether a request's CreditCharge is too small for the payload it carries
    or asks for (3.3.5.2.5), which is refused with INVALID_PARAMETER.  SMB
    2.0.2 has no charges; a charge of 0 (a client that never learnt them)
    passes for payloads up to 64 KiB, as one credit's worth."""
    if dialect < Dialect.SMB_2_1:
        return False
    payload = expected_payload(command, body)
    return credit_charge < required_charge(payload) and bool(credit_charge or payload > 65536)
