"""NEGOTIATE codecs on recorded client bytes; our responses parsed by smbprotocol."""

import struct

import pytest
from hypothesis import given, settings, strategies as st
from smbprotocol.connection import SMB2NegotiateResponse

from smb.wire import negotiate
from smb.wire.crypto import Cipher, Dialect, SigningAlgorithm
from smb.wire.header import HEADER_SIZE
from smb_replay import frames


def _request(fixture: str) -> negotiate.NegotiateRequest:
    message = frames(fixture)[0][1]
    return negotiate.parse_request(message[HEADER_SIZE:], message)


def test_smbclient_311_negotiate():
    req = _request("smbclient_smb311_signed.json")
    assert req.dialects == (0x0202, 0x0210, 0x0300, 0x0302, 0x0311)
    assert req.hash_algorithms == (1,) and len(req.salt) == 32
    assert set(req.ciphers) == {1, 2, 3, 4}
    assert set(req.signing_algorithms) == {0, 1, 2}
    choice = negotiate.choose(req)
    assert (choice.dialect, choice.cipher, choice.signing) == (
        Dialect.SMB_3_1_1, Cipher.AES_128_GCM, SigningAlgorithm.AES_GMAC)


def test_smbprotocol_negotiate():
    req = _request("smbprotocol_smb311_encrypted.json")
    assert Dialect.SMB_3_1_1 in req.dialects
    assert negotiate.choose(req).cipher in (Cipher.AES_128_GCM, Cipher.AES_128_CCM)


def test_smbclient_300_negotiate_has_no_contexts():
    req = _request("smbclient_smb300_signed.json")
    assert max(req.dialects) == Dialect.SMB_3_0 and req.ciphers is None
    assert negotiate.choose(req).signing == SigningAlgorithm.AES_CMAC


def test_no_common_dialect():
    req = negotiate.NegotiateRequest((0x0100, 0x0400), 1, 0, b"\x00" * 16)
    assert negotiate.choose(req) is None


def test_311_without_preauth_context_is_refused():
    body = (struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, b"g" * 16, 0, 0, 0)
            + struct.pack("<H", 0x311))
    with pytest.raises(negotiate.NegotiateError):
        negotiate.parse_request(body, b"\x00" * HEADER_SIZE + body)


def test_response_parses_with_smbprotocol():
    resp = negotiate.NegotiateResponse(
        security_mode=1, dialect=Dialect.SMB_3_1_1, server_guid=b"G" * 16, capabilities=4,
        max_transact_size=1 << 23, max_read_size=1 << 23, max_write_size=1 << 23,
        system_time=133_000_000_000_000_000, security_buffer=b"\x60\x03abc", salt=b"s" * 32,
        cipher=Cipher.AES_128_GCM, signing=SigningAlgorithm.AES_GMAC)
    parsed = SMB2NegotiateResponse()
    parsed.unpack(resp.pack())
    assert parsed["dialect_revision"].get_value() == 0x0311
    assert parsed["buffer"].get_value() == b"\x60\x03abc"
    contexts = {c["context_type"].get_value(): c["data"].get_value()
                for c in parsed["negotiate_context_list"].get_value()}
    assert contexts[1]["salt"].get_value() == b"s" * 32
    assert contexts[2]["ciphers"].get_value() == [Cipher.AES_128_GCM]
    assert len(contexts) == 3


def _smb1_negotiate(names: list[bytes]) -> bytes:
    data = b"".join(b"\x02" + n + b"\x00" for n in names)
    header = b"\xffSMB" + bytes([0x72]) + b"\x00" * 27
    return header + b"\x00" + struct.pack("<H", len(data)) + data


def test_smb1_upgrade():
    windows = _smb1_negotiate([b"PC NETWORK PROGRAM 1.0", b"NT LM 0.12", b"SMB 2.002",
                               b"SMB 2.???"])
    assert negotiate.smb1_upgrade_dialect(negotiate.smb1_dialects(windows)) == 0x02FF
    old = _smb1_negotiate([b"NT LM 0.12", b"SMB 2.002"])
    assert negotiate.smb1_upgrade_dialect(negotiate.smb1_dialects(old)) == 0x0202
    assert negotiate.smb1_upgrade_dialect(negotiate.smb1_dialects(
        _smb1_negotiate([b"NT LM 0.12"]))) is None
    assert negotiate.smb1_dialects(b"\xfeSMB" + b"\x00" * 60) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 400), st.integers(0, 6))
def test_garbage_only_raises_negotiate_error(tail, ctx_offset, ctx_count):
    body = struct.pack("<HHHHI16sIHH", 36, 2, 1, 0, 0, b"g" * 16, ctx_offset, ctx_count, 0) \
        + struct.pack("<HH", 0x0302, 0x0311) + tail
    message = b"\x00" * HEADER_SIZE + body
    try:
        negotiate.parse_request(body, message)
    except negotiate.NegotiateError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_smb1_garbage_never_raises(data):
    negotiate.smb1_dialects(b"\xffSMB\x72" + data)
