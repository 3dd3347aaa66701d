"""Making clients of a VIP notice at once that their server is gone.

A client whose server died keeps retransmitting into the void for minutes.
After a takeover the new holder sends each client of the old holder a bare
ACK with seq 0 and ack 0 from VIP:port.  That segment is out of the client's
window, so the client answers with an ACK carrying its real sequence numbers;
this node's kernel has no such connection and answers that with a RST, which
the client accepts, and the client reconnects.

The leaving side is the reverse problem: a node letting go of the VIP resets
its own connections on it (reset_local_connections) so their clients move on
instead of waiting for a server that no longer answers.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import subprocess
from typing import Iterable

from hanode.net import NetError
from hanode.net.packet import PROTO_TCP, ip_header, with_checksum

log = logging.getLogger(__name__)

TCP_FLAG_ACK = 0x10
TICKLE_WINDOW = 1234
TICKLE_TTL = 64


def _address(text: str, like: int | None = None) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address; an IPv4-mapped IPv6 client of an IPv4 VIP becomes plain IPv4."""
    addr = ipaddress.ip_address(text)
    if like == 4 and addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def tcp_packet(src_ip: str, src_port: int, dst_ip: str, dst_port: int, *, seq: int = 0,
               ack: int = 0, flags: int = TCP_FLAG_ACK, window: int = TICKLE_WINDOW) -> bytes:
    """A whole IPv4 or IPv6 packet carrying one bare TCP segment (no options, no data)."""
    src = _address(src_ip)
    dst = _address(dst_ip, like=src.version)
    tcp = struct.pack("!HHIIBBHHH", src_port, dst_port, seq, ack, 5 << 4, flags, window, 0, 0)
    tcp = with_checksum(src, dst, PROTO_TCP, tcp, offset=16)
    return ip_header(src, dst, PROTO_TCP, len(tcp), ttl=TICKLE_TTL) + tcp


def tickle_packet(src_ip: str, src_port: int, dst_ip: str, dst_port: int) -> bytes:
    """A bare TCP ACK, seq 0, ack 0, window 1234: out of any window, so it draws an ACK."""
    return tcp_packet(src_ip, src_port, dst_ip, dst_port)


def send_tickles(vip_ip: str, port: int, clients: Iterable[tuple[str, int]]) -> int:
    """Send one tickle from vip_ip:port to every (client ip, client port); returns how many left.

    A client that cannot be sent to (no route, say) is logged and skipped, so
    one bad entry never keeps the others from being tickled.
    """
    version = _address(vip_ip).version
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    sent = 0
    try:
        # IPPROTO_RAW means "header included" for both families: the packet
        # goes out exactly as built, with the VIP as its source.
        sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except OSError as exc:
        raise NetError(f"cannot open a raw socket to tickle clients of {vip_ip}: "
                       f"{exc.strerror or exc}") from None
    with sock:
        for client_ip, client_port in clients:
            try:
                dst = _address(client_ip, like=version)
                packet = tickle_packet(vip_ip, port, str(dst), client_port)
                sock.sendto(packet, (str(dst), 0))
            except (OSError, ValueError) as exc:
                log.warning("tickle %s:%d -> %s:%d failed: %s", vip_ip, port, client_ip,
                            client_port, exc)
                continue
            sent += 1
    return sent


def reset_local_connections(vip_ip: str, port: int) -> int:
    """Make this node's kernel send RST on its established connections at vip_ip:port.

    Uses SOCK_DESTROY through ``ss -K`` (needs CONFIG_INET_DIAG_DESTROY).  Call
    it while the VIP is still on the interface: without the address the
    kernel cannot route the RSTs and the sockets just vanish silently.
    Returns the number of connections reset.
    """
    addr = _address(vip_ip)
    src = str(addr) if addr.version == 4 else f"[{addr}]"
    command = ["ss", "-K", "-H", "-n", "-t", "state", "established",
               f"( sport = :{port} and src {src} )"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetError(f"cannot reset connections on {vip_ip}:{port}: {exc}") from None
    if result.returncode != 0:
        raise NetError(f"cannot reset connections on {vip_ip}:{port}: "
                       f"ss: {result.stderr.strip() or f'exit {result.returncode}'}")
    return sum(1 for line in result.stdout.splitlines() if line.strip())
