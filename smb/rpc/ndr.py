"""NDR and NDR64 transfer syntax (C706 chapter 14, MS-RPCE 2.2.5), the parts
the IPC$ services use: primitives, unique pointers with their deferred
pointees, conformant (varying) arrays and strings, SIDs.

NDR writes a constructed value's scalars first and the pointees its embedded
pointers name afterwards, depth-first; :meth:`Writer.deferring` and
:meth:`Reader.deferring` are that rule, applied once per top-level parameter
and once per pointee.  NDR64 differs from NDR in the width of pointers and
of array counts (8 bytes), in enums (4 bytes) and in padding every structure
to its alignment; the same encoders serve both through :attr:`ndr64`.

Readers never trust a count: every length is checked against the bytes left
before anything is allocated, so a lying request costs nothing.
"""

from __future__ import annotations

import struct
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class NdrError(ValueError):
    """Stub data that does not decode (answered with the nca_s_fault_ndr fault)."""


# The transfer syntaxes (MS-RPCE 2.2.4.12): uuid bytes as on the wire, version.
NDR_SYNTAX = (bytes.fromhex("045d888aeb1cc9119fe808002b104860"), 2)
NDR64_SYNTAX = (bytes.fromhex("33057171babe37498319b5dbef9ccc36"), 1)


class Writer:
    """Builds one stub in NDR (or NDR64)."""

    def __init__(self, ndr64: bool = False) -> None:
        self.ndr64 = ndr64
        self.buf = bytearray()
        self._frames: list[list[Callable[[], None]]] = []
        self._next_ref = 0x20000

    @property
    def ptr_align(self) -> int:
        return 8 if self.ndr64 else 4

    def align(self, n: int) -> None:
        self.buf += bytes(-len(self.buf) % n)

    def u8(self, v: int) -> None:
        self.buf.append(v & 0xFF)

    def u16(self, v: int) -> None:
        self.align(2)
        self.buf += struct.pack("<H", v & 0xFFFF)

    def u32(self, v: int) -> None:
        self.align(4)
        self.buf += struct.pack("<I", v & 0xFFFFFFFF)

    def u64(self, v: int) -> None:
        self.align(8)
        self.buf += struct.pack("<Q", v)

    def enum16(self, v: int) -> None:
        """An IDL enum: two bytes in NDR, four in NDR64."""
        (self.u32 if self.ndr64 else self.u16)(v)

    def count(self, n: int) -> None:
        """A conformance or variance count (size_t on the wire)."""
        (self.u64 if self.ndr64 else self.u32)(n)

    def raw(self, data: bytes) -> None:
        self.buf += data

    def end_struct(self, alignment: int) -> None:
        """NDR64 pads every structure to a multiple of its alignment."""
        if self.ndr64:
            self.align(alignment)

    def union_switch(self, value: int, *, enum16: bool = False) -> None:
        """A non-encapsulated union's discriminant.  The union is aligned to its
        widest arm (a pointer, in every union served here) both before the
        discriminant and after it, which only NDR64 notices."""
        self.align(self.ptr_align)
        (self.enum16 if enum16 else self.u32)(value)
        self.align(self.ptr_align)

    def pointer(self, pointee: Callable[[], None] | None) -> None:
        """A unique pointer: its referent id now, ``pointee`` with the deferred data."""
        self.align(self.ptr_align)
        if pointee is None:
            self.buf += bytes(self.ptr_align)
            return
        self._next_ref += 4
        self.buf += self._next_ref.to_bytes(self.ptr_align, "little")
        self._frames[-1].append(pointee)

    def deferring(self, scalars: Callable[[], None]) -> None:
        """Write ``scalars``, then every pointee they named, each in its own frame."""
        frame: list[Callable[[], None]] = []
        self._frames.append(frame)
        try:
            scalars()
        finally:
            self._frames.pop()
        for pointee in frame:
            self.deferring(pointee)

    # -- strings ------------------------------------------------------------------

    def string(self, text: str) -> None:
        """``[string] wchar_t *``: conformant varying, NUL included."""
        data = (text + "\x00").encode("utf-16-le")
        n = len(data) // 2
        self.count(n)
        self.count(0)
        self.count(n)
        self.raw(data)

    def lsa_string(self, text: str | None, *, large: bool = False) -> None:
        """lsa_String / RPC_UNICODE_STRING: lengths in bytes, buffer without NUL;
        ``large`` (lsa_StringLarge) announces room for a NUL that is not sent."""
        data = b"" if text is None else text.encode("utf-16-le")
        size = len(data) + (2 if large and text is not None else 0)
        self.align(self.ptr_align)
        self.u16(len(data))
        self.u16(size)

        def buffer() -> None:
            self.count(size // 2)
            self.count(0)
            self.count(len(data) // 2)
            self.raw(data)
        self.pointer(None if text is None else buffer)
        self.end_struct(self.ptr_align)

    def sid(self, sid: bytes) -> None:
        """dom_sid as a pointee: conformance (sub-authority count), then the SID."""
        self.count(sid[1])
        self.align(4)
        self.raw(sid)
        self.end_struct(4)

    def getvalue(self) -> bytes:
        return bytes(self.buf)


class Deferred(Generic[T]):
    """What a pointer pointed to, known once its frame's pointees were read."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: T | None = None


class Reader:
    """Reads one stub in NDR (or NDR64), checking every bound."""

    def __init__(self, data: bytes, ndr64: bool = False) -> None:
        self.ndr64 = ndr64
        self.data = data
        self.pos = 0
        self._frames: list[list[Callable[[], None]]] = []

    @property
    def ptr_align(self) -> int:
        return 8 if self.ndr64 else 4

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise NdrError("stub data ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def align(self, n: int) -> None:
        self._take(-self.pos % n)

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        self.align(2)
        return struct.unpack("<H", self._take(2))[0]

    def u32(self) -> int:
        self.align(4)
        return struct.unpack("<I", self._take(4))[0]

    def u64(self) -> int:
        self.align(8)
        return struct.unpack("<Q", self._take(8))[0]

    def enum16(self) -> int:
        return self.u32() if self.ndr64 else self.u16()

    def count(self) -> int:
        return self.u64() if self.ndr64 else self.u32()

    def end_struct(self, alignment: int) -> None:
        if self.ndr64:
            self.align(alignment)

    def union_switch(self, *, enum16: bool = False) -> int:
        """See :meth:`Writer.union_switch`."""
        self.align(self.ptr_align)
        value = self.enum16() if enum16 else self.u32()
        self.align(self.ptr_align)
        return value

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def bounded(self, n: int, size: int) -> int:
        """``n`` elements of ``size`` bytes fit in what is left, or NdrError."""
        if n * size > self.remaining():
            raise NdrError("array count larger than the stub")
        return n

    def pointer(self, pointee: Callable[[], T]) -> Deferred[T]:
        """A unique pointer; its pointee is read with the frame's deferred data."""
        self.align(self.ptr_align)
        ref = int.from_bytes(self._take(self.ptr_align), "little")
        box: Deferred[T] = Deferred()
        if ref:
            def read() -> None:
                box.value = pointee()
            self._frames[-1].append(read)
        return box

    def deferring(self, scalars: Callable[[], T]) -> T:
        frame: list[Callable[[], None]] = []
        self._frames.append(frame)
        try:
            value = scalars()
        finally:
            self._frames.pop()
        for pointee in frame:
            self.deferring(pointee)
        return value

    def string(self) -> str:
        """``[string] wchar_t``: conformant varying; the NUL is dropped."""
        maximum = self.count()
        offset = self.count()
        actual = self.count()
        if offset != 0 or actual > maximum:
            raise NdrError("string offset or length out of range")
        data = self._take(2 * self.bounded(actual, 2))
        return data.decode("utf-16-le", errors="replace").split("\x00", 1)[0]

    def lsa_string(self) -> Deferred[str]:
        self.align(self.ptr_align)
        length = self.u16()
        size = self.u16()
        if length > size or length % 2:
            raise NdrError("lsa_String length larger than its size")

        def buffer() -> str:
            maximum = self.count()
            offset = self.count()
            actual = self.count()
            if offset != 0 or actual > maximum or actual * 2 != length:
                raise NdrError("lsa_String buffer does not match its length")
            return self._take(2 * self.bounded(actual, 2)).decode("utf-16-le", errors="replace")
        box = self.pointer(buffer)
        self.end_struct(self.ptr_align)
        return box

    def sid(self) -> bytes:
        """dom_sid as a pointee, returned in its binary form (MS-DTYP 2.4.2.2)."""
        n = self.count()
        self.align(4)
        head = self._take(8)
        if head[0] != 1 or head[1] != n or n > 15:
            raise NdrError("malformed SID")
        body = self._take(4 * n)
        self.end_struct(4)
        return head + body

    def policy_handle(self) -> bytes:
        self.align(4)
        return self._take(20)
