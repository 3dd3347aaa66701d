"""Direct-TCP framing (MS-SMB2 2.1), as pure rules on bytes.

Each SMB2 message travels after a 4-byte header: a zero byte and a 24-bit
big-endian length.  The length is checked before a byte of the message is
read or a buffer allocated for it, so a client cannot make a worker take
more memory than the negotiated sizes allow.
"""

from __future__ import annotations

from smb.server.violation import ProtocolViolation

PREFIX_SIZE = 4
SMALLEST_MESSAGE = 4  # a protocol id, at least


def message_length(prefix: bytes | bytearray | memoryview, max_frame: int) -> int:
    """The length of the message announced by a frame's 4-byte ``prefix``."""
    if prefix[0] != 0:
        raise ProtocolViolation("not a direct-TCP frame")
    length = int.from_bytes(prefix[1:4], "big")
    if length > max_frame:
        raise ProtocolViolation(f"frame of {length} bytes exceeds {max_frame}")
    if length < SMALLEST_MESSAGE:
        raise ProtocolViolation("frame too short")
    return length


def frame_prefix(length: int) -> bytes:
    """The 4 bytes that go before a message of ``length`` bytes."""
    return length.to_bytes(PREFIX_SIZE, "big")


class FrameBuffer:
    """Bytes received and not yet taken as frames (h11's ``receive_data`` /
    ``next_event`` shape): feed it what the socket gave, take whole messages.

    A message the buffer does not hold whole yet is announced by
    :meth:`pending` so the transport can read it straight into a buffer of
    its own (a large WRITE is then copied once).
    """

    def __init__(self, received: bytes = b"", max_frame: int = 64 * 1024) -> None:
        self._buf = bytearray(received)
        self.max_frame = max_frame

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def __len__(self) -> int:
        return len(self._buf)

    def next_message(self) -> bytearray | None:
        """The next whole message, or None when more bytes are needed."""
        if len(self._buf) < PREFIX_SIZE:
            return None
        length = message_length(self._buf, self.max_frame)
        if len(self._buf) < PREFIX_SIZE + length:
            return None
        message = self._buf[PREFIX_SIZE:PREFIX_SIZE + length]
        del self._buf[:PREFIX_SIZE + length]
        return message

    def pending(self) -> int:
        """The length of the message whose prefix is buffered (0 when less
        than a prefix is); the caller then takes the bytes with :meth:`take`."""
        if len(self._buf) < PREFIX_SIZE:
            return 0
        return message_length(self._buf, self.max_frame)

    def take(self, into: memoryview) -> int:
        """Start a pending message: drop its prefix and move what is buffered
        of it into ``into``; returns how many bytes were moved."""
        del self._buf[:PREFIX_SIZE]
        have = min(len(self._buf), len(into))
        into[:have] = self._buf[:have]
        del self._buf[:have]
        return have

    def leftover(self) -> bytes:
        """What is buffered (bytes read past a message that is handed on)."""
        return bytes(self._buf)
