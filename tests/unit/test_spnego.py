"""SPNEGO tokens: the recorded clients' tokens, and ours read back by pyspnego."""

from hypothesis import given, settings, strategies as st
from spnego._spnego import unpack_token, NegTokenInit, NegTokenResp

from smb.wire import spnego
from smb_replay import frames, security_buffer


def _client_blob(frame: int) -> bytes:
    return security_buffer(frames("smbclient_smb311_signed.json")[frame][1])


def test_smbclient_init_token():
    token = spnego.parse_client_token(_client_blob(2))
    assert token.mech_types[0] == spnego.NTLMSSP_OID
    assert token.mech_token.startswith(b"NTLMSSP\x00")
    assert token.mech_types_der.startswith(b"\x30")


def test_final_client_token_has_mic():
    token = spnego.parse_client_token(_client_blob(4))
    assert token.mech_token.startswith(b"NTLMSSP\x00\x03")
    assert len(token.mech_list_mic) == 16


def test_server_init_token_read_by_pyspnego():
    parsed = unpack_token(spnego.server_init_token())
    assert isinstance(parsed, NegTokenInit)
    assert parsed.mech_types == [spnego.NTLMSSP_OID]


def test_server_response_read_by_pyspnego():
    parsed = unpack_token(spnego.server_response(
        spnego.NegState.ACCEPT_INCOMPLETE, b"NTLMSSP\x00" + b"x" * 300, b"m" * 16,
        supported_mech=True))
    assert isinstance(parsed, NegTokenResp)
    assert parsed.neg_state == spnego.NegState.ACCEPT_INCOMPLETE
    assert parsed.supported_mech == spnego.NTLMSSP_OID
    assert parsed.response_token == b"NTLMSSP\x00" + b"x" * 300
    assert parsed.mech_list_mic == b"m" * 16


def test_client_tokens_round_trip():
    init = spnego.parse_client_token(spnego.client_init_token((spnego.NTLMSSP_OID,), b"tok"))
    assert init.mech_types == (spnego.NTLMSSP_OID,) and init.mech_token == b"tok"
    resp = spnego.parse_client_token(spnego.client_response_token(b"t2", b"mic"))
    assert (resp.mech_token, resp.mech_list_mic) == (b"t2", b"mic")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_only_raises_spnego_error(data):
    for blob in (data, b"\x60" + data[:1] + data[1:], b"\xa1" + data):
        try:
            spnego.parse_client_token(blob)
        except spnego.SpnegoError:
            pass
