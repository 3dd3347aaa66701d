"""The announcement and tickle builders, byte for byte.

The expected bytes are written out field by field; the checksums in them
were summed by hand (16-bit words, end-around carry) and are verified again
below by an implementation that shares no code with hanode.net.packet.
"""

from __future__ import annotations

import pytest

from hanode.config import VipConfig
from hanode.net.announce import (
    announcement_frames, garp_reply, garp_request, unsolicited_na,
)
from hanode.net.tickle import tickle_packet

MAC = bytes.fromhex("021122334455")


def h(*fields: str) -> bytes:
    return bytes.fromhex("".join(fields).replace(" ", ""))


def ones_sum_ok(data: bytes) -> bool:
    """True when data, checksum field included, sums to 0xffff in one's complement."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += int.from_bytes(data[i:i + 2], "big")
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


GARP_REQUEST = h(
    "ffffffffffff", "021122334455", "0806",           # Ethernet: broadcast, us, ARP
    "0001 0800 06 04 0001",                           # Ethernet/IPv4, request
    "021122334455 0a000032",                          # sender: us, 10.0.0.50
    "000000000000 0a000032",                          # target: unknown MAC, 10.0.0.50
    "00" * 18,                                        # padding to 60 bytes
)
GARP_REPLY = h(
    "ffffffffffff", "021122334455", "0806",
    "0001 0800 06 04 0002",                           # reply
    "021122334455 0a000032",
    "021122334455 0a000032",                          # target: our MAC again (RFC 5944)
    "00" * 18,
)
NA = h(
    "333300000001", "021122334455", "86dd",           # Ethernet: all-nodes multicast, us, IPv6
    "60000000 0020 3a ff",                            # IPv6: payload 32, ICMPv6, hop limit 255
    "fd000000000000000000000000000050",               # src fd00::50
    "ff020000000000000000000000000001",               # dst ff02::1
    "88 00 f364",                                     # NA, code 0, checksum
    "20000000",                                       # flags: override only
    "fd000000000000000000000000000050",               # target fd00::50
    "02 01 021122334455",                             # target link-layer address option
)
TICKLE4 = h(
    "45 00 0028 0000 4000 40 06 2696",                # IPv4: len 40, DF, TTL 64, TCP, checksum
    "0a000032 0a000009",                              # 10.0.0.50 -> 10.0.0.9
    "01bd c3cb 00000000 00000000",                    # 445 -> 50123, seq 0, ack 0
    "50 10 04d2 d13f 0000",                           # 20-byte header, ACK, window 1234
)
TICKLE6 = h(
    "60000000 0014 06 40",                            # IPv6: payload 20, TCP, hop limit 64
    "fd000000000000000000000000000050",
    "fd000000000000000000000000000009",
    "01bd c3cb 00000000 00000000",
    "50 10 04d2 eb1f 0000",
)


def test_garp_request_bytes():
    assert garp_request(MAC, "10.0.0.50") == GARP_REQUEST


def test_garp_reply_bytes():
    assert garp_reply(MAC, "10.0.0.50") == GARP_REPLY


def test_unsolicited_na_bytes_and_checksum():
    frame = unsolicited_na(MAC, "fd00::50")
    assert frame == NA
    icmp = frame[14 + 40:]
    pseudo = frame[14 + 8:14 + 40] + (32).to_bytes(4, "big") + b"\0\0\0\x3a"
    assert ones_sum_ok(pseudo + icmp)


def test_unsolicited_na_normalises_address_text():
    assert unsolicited_na(MAC, "FD00:0::0050") == NA


def test_tickle_ipv4_bytes_and_checksums():
    packet = tickle_packet("10.0.0.50", 445, "10.0.0.9", 50123)
    assert packet == TICKLE4
    assert ones_sum_ok(packet[:20])
    pseudo = packet[12:20] + b"\0\x06" + (20).to_bytes(2, "big")
    assert ones_sum_ok(pseudo + packet[20:])


def test_tickle_ipv6_bytes_and_checksum():
    packet = tickle_packet("fd00::50", 445, "fd00::9", 50123)
    assert packet == TICKLE6
    pseudo = packet[8:40] + (20).to_bytes(4, "big") + b"\0\0\0\x06"
    assert ones_sum_ok(pseudo + packet[40:])


def test_tickle_to_ipv4_mapped_client_of_ipv4_vip():
    assert tickle_packet("10.0.0.50", 445, "::ffff:10.0.0.9", 50123) == TICKLE4


@pytest.mark.parametrize("sport,dport", [(1, 65535), (65535, 1), (445, 445)])
def test_tickle_checksums_hold_for_other_ports(sport, dport):
    packet = tickle_packet("192.168.200.1", sport, "192.168.7.254", dport)
    pseudo = packet[12:20] + b"\0\x06" + (20).to_bytes(2, "big")
    assert ones_sum_ok(packet[:20]) and ones_sum_ok(pseudo + packet[20:])


def test_builders_reject_bad_input():
    with pytest.raises(ValueError):
        garp_request(b"\x01\x02", "10.0.0.50")
    with pytest.raises(ValueError):
        garp_request(MAC, "fd00::50")
    with pytest.raises(ValueError):
        unsolicited_na(MAC, "10.0.0.50")
    with pytest.raises(ValueError):
        tickle_packet("10.0.0.50", 445, "fd00::9", 50123)


def test_one_round_per_family():
    assert announcement_frames(VipConfig("10.0.0.50/24"), MAC) == [GARP_REQUEST, GARP_REPLY]
    assert announcement_frames(VipConfig("fd00::50/64"), MAC) == [NA]
