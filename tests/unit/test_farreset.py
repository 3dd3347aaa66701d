"""Reading the client's answer to the old leader's tickle, and the RST it gets
(hanode.net.farreset, the pure part)."""

from __future__ import annotations

import struct

from hanode.net.farreset import TCP_FLAG_RST, Segment, answer, parse
from hanode.net.packet import PROTO_TCP
from hanode.net.tickle import tcp_packet

VIP = ("10.0.0.50", 445)
CLIENT = ("10.0.0.9", 50000)


def client_ack(seq: int, ack: int, src=CLIENT, dst=VIP) -> bytes:
    return tcp_packet(src[0], src[1], dst[0], dst[1], seq=seq, ack=ack)


def test_parse_reads_the_segment_of_an_ipv4_and_an_ipv6_packet():
    assert parse(client_ack(7, 123456)) == Segment(CLIENT, VIP, 7, 123456, 0x10)
    six = tcp_packet("fd00::9", 50000, "fd00::50", 445, seq=1, ack=2)
    assert parse(six) == Segment(("fd00::9", 50000), ("fd00::50", 445), 1, 2, 0x10)


def test_parse_skips_what_is_not_a_whole_tcp_segment():
    udp = bytearray(client_ack(1, 2))
    udp[9] = 17
    assert parse(bytes(udp)) is None
    assert parse(client_ack(1, 2)[:30]) is None
    assert parse(b"") is None


def test_the_rst_carries_exactly_the_sequence_number_the_client_expects():
    rst = answer(parse(client_ack(7, 0xFFFFFFF0)), VIP, {CLIENT})
    assert rst is not None
    seg = parse(rst)
    assert seg == Segment(VIP, CLIENT, 0xFFFFFFF0, 0, TCP_FLAG_RST)
    assert rst[9] == PROTO_TCP and struct.unpack("!H", rst[20 + 14:20 + 16])[0] == 0  # window 0


def test_only_a_waiting_clients_ack_to_the_vip_is_answered():
    assert answer(parse(client_ack(1, 2, src=("10.0.0.8", 50000))), VIP, {CLIENT}) is None
    assert answer(parse(client_ack(1, 2, dst=("10.0.0.50", 139))), VIP, {CLIENT}) is None
    assert answer(parse(client_ack(1, 2)), VIP, set()) is None
    rst_from_client = tcp_packet(CLIENT[0], CLIENT[1], VIP[0], VIP[1], flags=TCP_FLAG_RST)
    assert answer(parse(rst_from_client), VIP, {CLIENT}) is None
    assert answer(None, VIP, {CLIENT}) is None
