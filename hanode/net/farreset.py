"""Resetting the clients of an address this node has let go, when no node took it.

A planned move removes the VIP and drops the node's sockets silently, counting
on the successor's tickles to reset the clients.  When nobody claims (the last
node stopping), nobody tickles, and a client that is not sending waits on a
dead connection until its own timeouts (minutes).  The old node can still
reach it: it sends the tickle itself (a raw packet from VIP:port may leave
without the address), the client answers with an ACK carrying its sequence
numbers, and that ACK comes to this node's interface (the client's neighbour
entry for the VIP still names it) although the kernel no longer takes it.  A
packet socket on the interface reads it, and a RST whose sequence number is
exactly what the client expects next (RFC 5961: only that one is taken
without question) ends the connection; the client reconnects.

:func:`answer` (the pure part) reads one captured packet; :func:`reset_clients`
is the I/O around it.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Iterable

from hanode.net import NetError
from hanode.net.tickle import send_tickles, tcp_packet

log = logging.getLogger(__name__)

TCP_FLAG_RST = 0x04
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD


@dataclass(frozen=True)
class Segment:
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int


def parse(packet: bytes) -> Segment | None:
    """The TCP segment an IPv4 or IPv6 packet carries (None: not TCP, or cut short)."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        header = (packet[0] & 0x0F) * 4
        if packet[9] != 6:
            return None
        src, dst = ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
    elif version == 6 and len(packet) >= 40:
        header = 40
        if packet[6] != 6:  # extension headers are not followed: a client's ACK has none
            return None
        src, dst = ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
    else:
        return None
    if len(packet) < header + 14:
        return None
    sport, dport, seq, ack, _, flags = struct.unpack_from("!HHIIBB", packet, header)
    return Segment((str(src), sport), (str(dst), dport), seq, ack, flags)


def answer(segment: Segment | None, vip: tuple[str, int],
           waiting: set[tuple[str, int]]) -> bytes | None:
    """The RST that ends a client's connection, if ``segment`` is a waiting client's ACK to the VIP."""
    if segment is None or segment.dst != vip or segment.src not in waiting \
            or segment.flags & TCP_FLAG_RST:
        return None
    return tcp_packet(vip[0], vip[1], segment.src[0], segment.src[1], seq=segment.ack,
                      flags=TCP_FLAG_RST, window=0)


def reset_clients(vip_ip: str, port: int, interface: str,
                  clients: Iterable[tuple[str, int]], wait: float) -> int:
    """Tickle ``clients`` from vip_ip:port and reset each that answers within ``wait`` s.

    Returns how many were reset.  Blocking: run it in a thread.
    """
    waiting = {(str(ipaddress.ip_address(ip)), p) for ip, p in clients}
    if not waiting:
        return 0
    six = ipaddress.ip_address(vip_ip).version == 6
    vip = (str(ipaddress.ip_address(vip_ip)), port)
    try:
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM,
                                socket.htons(ETH_P_IPV6 if six else ETH_P_IP))
        capture.bind((interface, 0))
        raw = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_RAW,
                            socket.IPPROTO_RAW)
    except OSError as exc:
        raise NetError(f"cannot reset the clients of {vip_ip} on {interface}: "
                       f"{exc.strerror or exc}") from None
    reset = 0
    with capture, raw:
        send_tickles(vip_ip, port, waiting)
        end = time.monotonic() + wait
        while waiting and (left := end - time.monotonic()) > 0:
            if not select.select([capture], [], [], left)[0]:
                break
            segment = parse(capture.recv(65535))
            rst = answer(segment, vip, waiting)
            if rst is None or segment is None:
                continue
            try:
                raw.sendto(rst, (segment.src[0], 0))
            except OSError as exc:
                log.warning("reset of %s:%d failed: %s", *segment.src, exc)
                continue
            waiting.discard(segment.src)
            reset += 1
    return reset
