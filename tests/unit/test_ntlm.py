"""NTLMSSP server side: MS-NLMP 4.2.4 NTLMv2 vectors and recorded real clients."""

import struct

import pytest

from smb.wire import ntlm
from smb.wire.md4 import nt_hash
from smb_replay import replay_ntlm

# MS-NLMP 4.2.1 / 4.2.4 common values.
USER, DOMAIN, PASSWORD = "User", "Domain", "Password"
SERVER_CHALLENGE = bytes.fromhex("0123456789abcdef")
CLIENT_CHALLENGE = b"\xaa" * 8
RANDOM_SESSION_KEY = b"\x55" * 16


def _field(data: bytes, offset: int) -> bytes:
    return struct.pack("<HHI", len(data), len(data), offset)


def build_authenticate(nt_response: bytes, user: str, domain: str, enc_key: bytes,
                       flags: int) -> bytes:
    payload = [b"", nt_response, domain.encode("utf-16-le"), user.encode("utf-16-le"),
               b"", enc_key]
    offset = 64 + 8 + 16
    fields = b""
    for p in payload:
        fields += _field(p, offset)
        offset += len(p)
    return (ntlm.SIGNATURE + struct.pack("<I", 3) + fields + struct.pack("<I", flags)
            + b"\x00" * 8 + b"\x00" * 16 + b"".join(payload))


def msnlmp_blob() -> bytes:
    av = ntlm.pack_av_pairs([(ntlm.AvId.NB_DOMAIN_NAME, "Domain".encode("utf-16-le")),
                             (ntlm.AvId.NB_COMPUTER_NAME, "Server".encode("utf-16-le"))])
    return (b"\x01\x01" + b"\x00" * 6 + b"\x00" * 8 + CLIENT_CHALLENGE + b"\x00" * 4 + av
            + b"\x00" * 4)


def test_msnlmp_ntlmv2_vectors():
    response_key = ntlm.ntowfv2(nt_hash(PASSWORD), USER, DOMAIN)
    assert response_key.hex() == "0c868a403bfd7a93a3001ef22ef02e3f"
    import hmac
    import hashlib
    proof = hmac.new(response_key, SERVER_CHALLENGE + msnlmp_blob(), hashlib.md5).digest()
    assert proof.hex() == "68cd0ab851e51c96aabc927bebef6a1c"
    base = hmac.new(response_key, proof, hashlib.md5).digest()
    assert base.hex() == "8de40ccadbc14a82f15cb0ad0de95ca3"
    assert ntlm.rc4(base, RANDOM_SESSION_KEY).hex() == "c5dad2544fc9799094ce1ce90bc9d03e"


def _server_with_challenge() -> ntlm.NtlmServer:
    server = ntlm.NtlmServer(SERVER_CHALLENGE, timestamp=0)
    neg = ntlm.SIGNATURE + struct.pack("<II", 1, 0xE2088297) + b"\x00" * 16
    server.challenge(neg)
    return server


def _msnlmp_auth(password: str = PASSWORD, user: str = USER) -> bytes:
    import hmac
    import hashlib
    key = ntlm.ntowfv2(nt_hash(password), user, DOMAIN)
    proof = hmac.new(key, SERVER_CHALLENGE + msnlmp_blob(), hashlib.md5).digest()
    base = hmac.new(key, proof, hashlib.md5).digest()
    flags = ntlm.NegotiateFlags.KEY_EXCH | ntlm.NegotiateFlags.UNICODE | ntlm.NegotiateFlags.SIGN
    return build_authenticate(proof + msnlmp_blob(), user, DOMAIN,
                              ntlm.rc4(base, RANDOM_SESSION_KEY), flags)


def test_server_verifies_msnlmp_response_and_recovers_session_key():
    server = _server_with_challenge()
    auth = server.parse(_msnlmp_auth())
    assert (auth.user, auth.domain) == (USER, DOMAIN)
    assert server.verify(nt_hash(PASSWORD)) == RANDOM_SESSION_KEY


def test_wrong_password_fails():
    server = _server_with_challenge()
    server.parse(_msnlmp_auth(password="Passw0rd"))
    with pytest.raises(ntlm.AuthenticationFailed):
        server.verify(nt_hash(PASSWORD))


def test_ntlmv1_sized_response_is_refused():
    server = _server_with_challenge()
    server.parse(build_authenticate(b"\x01" * 24, USER, DOMAIN, b"", 0))
    with pytest.raises(ntlm.AuthenticationFailed):
        server.verify(nt_hash(PASSWORD))


def test_challenge_has_timestamp_and_ends_with_eol():
    server = _server_with_challenge()
    msg = server.challenge_message
    assert ntlm.message_type(msg) == ntlm.CHALLENGE_MESSAGE
    assert msg[24:32] == SERVER_CHALLENGE
    length, _, offset = struct.unpack_from("<HHI", msg, 40)
    info = msg[offset:offset + length]
    assert info.endswith(b"\x00\x00\x00\x00")
    assert ntlm.AvId.TIMESTAMP in dict(ntlm.parse_av_pairs(info))


@pytest.mark.parametrize("fixture", [
    "smbclient_smb311_signed.json", "smbclient_smb300_signed.json",
    "smbclient_smb202_signed.json", "smbprotocol_smb311_encrypted.json",
])
def test_recorded_clients_verify_with_mic_and_mechlistmic(fixture):
    r = replay_ntlm(fixture)
    assert r.server.authenticate.user == "alice"
    assert r.server.authenticate.mic is not None  # the real clients send a MIC
    assert r.server.client_mac(r.mech_types_der) == r.client_mic
    assert r.server.server_mac(r.mech_types_der) == r.server_mic


def test_recorded_mic_is_checked():
    r = replay_ntlm("smbclient_smb311_signed.json")
    raw = bytearray(r.server.authenticate.raw)
    raw[80] ^= 1  # inside the MIC
    r.server.parse(bytes(raw))
    with pytest.raises(ntlm.AuthenticationFailed):
        r.server.verify(nt_hash("Secret123"))


@pytest.mark.parametrize("data", [
    b"", b"NTLMSSP\x00", b"NTLMSSP\x00\x03\x00\x00\x00" + b"\xff" * 60,
    b"NTLMSSP\x00\x03\x00\x00\x00" + struct.pack("<HHI", 100, 100, 9999) + b"\x00" * 60,
    b"XXXXXXXX\x01\x00\x00\x00" + b"\x00" * 20,
])
def test_malformed_messages_raise_ntlm_error(data):
    with pytest.raises(ntlm.NtlmError):
        ntlm.parse_authenticate(data)


def test_ntlmv2_blob_with_broken_av_pairs_is_malformed():
    # As smbtorture's smb2.session.ntlmssp_bug14932 sends: a plausible blob header,
    # then bytes that are no AV pair list.
    blob = b"\x01\x01" + b"\x00" * 6 + b"?" * 8 + CLIENT_CHALLENGE + b"\x00" * 4 + \
        bytes.fromhex("11a20881503822782b9447fe54947bff")
    with pytest.raises(ntlm.NtlmError):
        ntlm.parse_authenticate(build_authenticate(b"p" * 16 + blob, USER, DOMAIN, b"", 0))
