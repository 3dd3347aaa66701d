"""The connection's NEGOTIATE state machine on recorded client bytes: what it
settles on, what it answers (parsed back by smbprotocol), the 3.1.1 hash of
the exchange, and the sequences that end the connection."""

from __future__ import annotations

import struct

import pytest
from smbprotocol.connection import SMB2NegotiateResponse

from smb.server.handler import ConnectionInfo
from smb.server.negotiation import (
    LARGE_MAX_SIZE, PRE_NEGOTIATE_MAX_FRAME, SMALL_MAX_SIZE, Negotiation, Offer, Refusal,
)
from smb.server.violation import ProtocolViolation
from smb.wire import crypto, negotiate
from smb.wire.crypto import Cipher, Dialect, SigningAlgorithm
from smb.wire.header import HEADER_SIZE, Status
from smb_replay import frames

NOW, SALT = 133_000_000_000_000_000, b"s" * 32


def _recorded(fixture: str) -> memoryview:
    return memoryview(frames(fixture)[0][1])


def _fresh(multichannel: bool = False) -> Negotiation:
    return Negotiation(ConnectionInfo(server_guid=b"g" * 16), multichannel)


def _smb1(*dialects: bytes) -> bytes:
    names = b"".join(b"\x02" + d + b"\x00" for d in dialects)
    return (b"\xffSMB" + bytes([0x72]) + bytes(27) + b"\x00"
            + struct.pack("<H", len(names)) + names)


@pytest.mark.parametrize("fixture, dialect, cipher, signing", [
    ("smbclient_smb311_signed.json", Dialect.SMB_3_1_1, Cipher.AES_128_GCM,
     SigningAlgorithm.AES_GMAC),
    ("smbclient_smb300_signed.json", Dialect.SMB_3_0, Cipher.AES_128_CCM,
     SigningAlgorithm.AES_CMAC),
    ("smbclient_smb202_signed.json", Dialect.SMB_2_0_2, Cipher.NONE,
     SigningAlgorithm.HMAC_SHA256),
])
def test_settles_on_what_the_recorded_client_offered(fixture, dialect, cipher, signing):
    state = _fresh()
    message = _recorded(fixture)
    assert state.max_frame == PRE_NEGOTIATE_MAX_FRAME and not state.negotiated
    offer = state.offer(message, message[HEADER_SIZE:])
    assert isinstance(offer, Offer)
    body = state.accept(offer, now=NOW, salt=SALT)
    assert state.negotiated and state.info.dialect == dialect
    assert (state.cipher, state.signing_alg) == (cipher, signing)
    size = SMALL_MAX_SIZE if dialect == Dialect.SMB_2_0_2 else LARGE_MAX_SIZE
    assert state.info.max_read_size == size and state.max_frame > size
    response = SMB2NegotiateResponse()
    response.unpack(body)
    assert response["dialect_revision"].get_value() == dialect
    assert response["server_guid"].pack() == b"g" * 16
    assert response["max_read_size"].get_value() == size


def test_311_preauth_hash_covers_request_and_response():
    state = _fresh()
    message = _recorded("smbclient_smb311_signed.json")
    body = state.accept(state.offer(message, message[HEADER_SIZE:]), now=NOW, salt=SALT)
    sent = b"\xfeSMB" + bytes(60) + body
    state.hash_exchange(message, sent)
    assert state.preauth == crypto.preauth_update(
        crypto.preauth_update(crypto.PREAUTH_INITIAL, message), sent)


def test_pre_311_dialects_keep_no_preauth_hash():
    state = _fresh()
    message = _recorded("smbclient_smb300_signed.json")
    state.accept(state.offer(message, message[HEADER_SIZE:]), now=NOW, salt=SALT)
    state.hash_exchange(message, b"anything")
    assert state.preauth == crypto.PREAUTH_INITIAL


def test_a_second_negotiate_ends_the_connection():
    state = _fresh()
    message = _recorded("smbclient_smb311_signed.json")
    state.accept(state.offer(message, message[HEADER_SIZE:]), now=NOW, salt=SALT)
    with pytest.raises(ProtocolViolation, match="second NEGOTIATE"):
        state.offer(message, message[HEADER_SIZE:])
    with pytest.raises(ProtocolViolation, match="after negotiation"):
        state.smb1(_smb1(b"SMB 2.???"), now=NOW, salt=SALT)


def test_refusals_are_statuses_not_violations():
    state = _fresh()
    no_dialect = struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, b"c" * 16, 0, 0, 0) \
        + struct.pack("<H", 0x0400)
    refusal = state.offer(memoryview(bytes(64) + no_dialect), memoryview(no_dialect))
    assert refusal == Refusal(Status.NOT_SUPPORTED, "no dialect in common")
    short = memoryview(b"\x24\x00")
    refusal = state.offer(memoryview(bytes(64) + b"\x24\x00"), short)
    assert isinstance(refusal, Refusal) and refusal.status == Status.INVALID_PARAMETER
    assert not state.negotiated


def test_smb1_wildcard_upgrade_then_smb2():
    state = _fresh()
    body = state.smb1(_smb1(b"NT LM 0.12", b"SMB 2.002", b"SMB 2.???"), now=NOW, salt=SALT)
    assert state.wildcard and not state.negotiated
    response = SMB2NegotiateResponse()
    response.unpack(body)
    assert response["dialect_revision"].get_value() == Dialect.WILDCARD
    message = _recorded("smbclient_smb311_signed.json")
    offer = state.offer(message, message[HEADER_SIZE:])
    assert not state.may_hand_off(offer, first_message=True)  # served where it came
    state.accept(offer, now=NOW, salt=SALT)
    assert state.negotiated and not state.wildcard


def test_smb1_without_smb2_ends_the_connection():
    with pytest.raises(ProtocolViolation, match="without SMB2"):
        _fresh().smb1(_smb1(b"NT LM 0.12"), now=NOW, salt=SALT)


def test_only_a_first_multichannel_3x_negotiate_may_be_handed_off():
    message = _recorded("smbclient_smb311_signed.json")
    offer = _fresh().offer(message, message[HEADER_SIZE:])
    mc = Offer(negotiate.NegotiateRequest(
        offer.request.dialects, 1, negotiate.Capabilities.MULTI_CHANNEL, b"c" * 16),
        offer.choice)
    assert _fresh(multichannel=True).may_hand_off(mc, first_message=True)
    assert not _fresh(multichannel=True).may_hand_off(mc, first_message=False)
    assert not _fresh(multichannel=False).may_hand_off(mc, first_message=True)
    no_guid = Offer(negotiate.NegotiateRequest(
        offer.request.dialects, 1, negotiate.Capabilities.MULTI_CHANNEL, bytes(16)), offer.choice)
    assert not _fresh(multichannel=True).may_hand_off(no_guid, first_message=True)


@pytest.mark.parametrize("fixture, ca_share, advertised", [
    ("smbclient_smb311_signed.json", True, True),
    ("smbclient_smb300_signed.json", True, True),
    ("smbclient_smb202_signed.json", True, False),   # no persistent handles below 3.0
    ("smbclient_smb311_signed.json", False, False),  # no CA share: as before
])
def test_persistent_handles_advertised_to_3x_when_a_share_is_ca(fixture, ca_share, advertised):
    state = Negotiation(ConnectionInfo(server_guid=b"g" * 16), False, persistent_handles=ca_share)
    message = _recorded(fixture)
    offer = state.offer(message, message[HEADER_SIZE:])
    response = SMB2NegotiateResponse()
    response.unpack(state.accept(offer, now=NOW, salt=SALT))
    caps = response["capabilities"].get_value()
    assert bool(caps & negotiate.Capabilities.PERSISTENT_HANDLES) is advertised
