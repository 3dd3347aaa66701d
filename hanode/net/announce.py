"""Telling the segment that the VIP now lives at this node's MAC.

After a takeover every neighbour (clients, the router) still maps the VIP to
the old holder's MAC.  A gratuitous ARP request and reply (IPv4) or an
unsolicited neighbour advertisement with the override flag (IPv6) makes them
update that entry at once instead of after their cache times out.

The builders are pure and return whole Ethernet frames; send_announcement()
puts one round of them on the wire through an AF_PACKET socket.
"""

from __future__ import annotations

import ipaddress
import socket
import struct


from hanode.config import VipConfig
from hanode.net import NetError
from hanode.net.addresses import interface_mac
from hanode.net.packet import PROTO_ICMPV6, ip_header, with_checksum

ETH_BROADCAST = b"\xff" * 6
ETH_ALL_NODES = bytes.fromhex("333300000001")  # the MAC of ff02::1 (RFC 2464 section 7)
ETH_MIN_FRAME = 60  # without the FCS; short frames are padded with zeros
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD

ARP_REQUEST = 1
ARP_REPLY = 2
ICMPV6_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LINKADDR = 2
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ND_HOP_LIMIT = 255  # receivers drop neighbour discovery with any other hop limit


def _check_mac(mac: bytes) -> bytes:
    if len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, not {len(mac)}")
    return mac


def _ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return (dst + src + struct.pack("!H", ethertype) + payload).ljust(ETH_MIN_FRAME, b"\0")


def _arp(op: int, mac: bytes, ip: str, target_mac: bytes) -> bytes:
    addr = ipaddress.IPv4Address(ip).packed
    payload = struct.pack("!HHBBH6s4s6s4s", 1, ETHERTYPE_IPV4, 6, 4, op,
                          _check_mac(mac), addr, target_mac, addr)
    return _ethernet(ETH_BROADCAST, mac, ETHERTYPE_ARP, payload)


def garp_request(mac: bytes, ip: str) -> bytes:
    """An ARP announcement (RFC 5227 2.3): request for our own address, target MAC zero."""
    return _arp(ARP_REQUEST, mac, ip, b"\0" * 6)


def garp_reply(mac: bytes, ip: str) -> bytes:
    """A gratuitous reply (RFC 5944 4.6), broadcast, for hosts that only learn from replies."""
    return _arp(ARP_REPLY, mac, ip, mac)


def unsolicited_na(mac: bytes, ip6: str) -> bytes:
    """An unsolicited neighbour advertisement (RFC 4861 7.2.6) to all nodes, override set."""
    addr = ipaddress.IPv6Address(ip6)
    icmp = struct.pack("!BBHI16sBB6s", ICMPV6_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE,
                       addr.packed, ND_OPT_TARGET_LINKADDR, 1, _check_mac(mac))
    icmp = with_checksum(addr, ALL_NODES, PROTO_ICMPV6, icmp, offset=2)
    packet = ip_header(addr, ALL_NODES, PROTO_ICMPV6, len(icmp), ttl=ND_HOP_LIMIT) + icmp
    return _ethernet(ETH_ALL_NODES, mac, ETHERTYPE_IPV6, packet)


def announcement_frames(vip: VipConfig, mac: bytes) -> list[bytes]:
    """One round of announcement frames for a VIP."""
    if vip.version == 4:
        return [garp_request(mac, vip.ip), garp_reply(mac, vip.ip)]
    return [unsolicited_na(mac, vip.ip)]


def send_announcement(vip: VipConfig) -> int:
    """Send one round of announcements for vip on its interface; returns frames sent."""
    frames = announcement_frames(vip, interface_mac(vip.interface))
    try:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((vip.interface, 0))
            for frame in frames:
                sock.send(frame)
    except OSError as exc:
        raise NetError(f"cannot announce {vip.ip} on {vip.interface}: {exc.strerror or exc}") from None
    return len(frames)
