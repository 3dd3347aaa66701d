"""Byte-level pieces shared by the frame builders: checksums and IP headers.

Kept pure (bytes in, bytes out) so the builders in announce.py and tickle.py
can be checked byte for byte without a socket.
"""

from __future__ import annotations

import ipaddress
import struct

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PROTO_TCP = 6
PROTO_ICMPV6 = 58


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: IPAddress, dst: IPAddress, proto: int, length: int) -> bytes:
    """What TCP and ICMPv6 checksums cover besides their own bytes (RFC 793, RFC 8200 8.1)."""
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, proto)


def with_checksum(src: IPAddress, dst: IPAddress, proto: int, segment: bytes, offset: int) -> bytes:
    """segment with its (zeroed) checksum field at offset filled in."""
    value = checksum(pseudo_header(src, dst, proto, len(segment)) + segment)
    return segment[:offset] + struct.pack("!H", value) + segment[offset + 2:]


def ip_header(src: IPAddress, dst: IPAddress, proto: int, payload_length: int, ttl: int) -> bytes:
    """An IPv4 header (no options, DF set, id 0) or an IPv6 header, by the family of src."""
    if src.version != dst.version:
        raise ValueError(f"{src} and {dst} are of different IP versions")
    if src.version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_length, 0, 0x4000,
                             ttl, proto, 0, src.packed, dst.packed)
        return header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return struct.pack("!IHBB16s16s", 6 << 28, payload_length, proto, ttl, src.packed, dst.packed)
