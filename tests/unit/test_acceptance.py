"""The signing and encryption rules a request on a session must meet, checked
on real request bytes (signed with smb.wire.crypto as a client signs them)."""

from __future__ import annotations

import pytest

from smb.server.acceptance import SessionRules, refusal
from smb.wire import crypto
from smb.wire.crypto import Dialect, SigningAlgorithm
from smb.wire.header import Command, Header, parse_header

KEY = bytes(range(16))
QUERY_INFO_BODY = bytes(40)


def request(command: int = Command.QUERY_INFO, *, sign_with: bytes | None = None,
            alg: int = SigningAlgorithm.AES_CMAC, body: bytes = QUERY_INFO_BODY) -> bytes:
    """A request's bytes, signed with ``sign_with`` when given."""
    header = bytearray(Header(command=command, message_id=5, session_id=0x11, tree_id=3).pack())
    if sign_with is not None:
        crypto.sign_header(sign_with, alg, header, [body])
    return bytes(header) + body


def rules(**changes: object) -> SessionRules:
    base = dict(signing_required=False, encrypt_data=False, is_guest=False,
                dialect=Dialect.SMB_3_1_1, signing_key=KEY, signing_alg=SigningAlgorithm.AES_CMAC)
    base.update(changes)
    return SessionRules(**base)  # type: ignore[arg-type]


def check(message: bytes, session: SessionRules, encrypted: bool = False) -> str | None:
    return refusal(message, parse_header(message), session, encrypted)


@pytest.mark.parametrize("alg", list(SigningAlgorithm))
def test_a_well_signed_request_passes(alg):
    assert check(request(sign_with=KEY, alg=alg), rules(signing_required=True, signing_alg=alg)) \
        is None


def test_a_signature_that_does_not_match_is_refused():
    message = bytearray(request(sign_with=KEY))
    message[-1] ^= 1  # the body changed after signing
    assert check(bytes(message), rules()) == "bad signature on QUERY_INFO"
    wrong_key = request(sign_with=bytes(16))
    assert check(wrong_key, rules()) == "bad signature on QUERY_INFO"


def test_a_signing_session_refuses_unsigned_requests_but_negotiate_and_cancel():
    assert check(request(), rules(signing_required=True)) == \
        "unsigned QUERY_INFO on a signed session"
    for command in (Command.NEGOTIATE, Command.CANCEL):
        assert check(request(command, body=bytes(4)), rules(signing_required=True)) is None


def test_a_session_without_a_channel_here_checks_no_signature():
    """Its key is not this connection's to check with (the session is another
    worker's binding in progress); other rules still apply."""
    message = bytearray(request(sign_with=KEY))
    message[-1] ^= 1
    assert check(bytes(message), rules(signing_key=None)) is None
    assert check(request(), rules(signing_required=True, signing_key=None)) is None


def test_smb311_tree_connect_must_be_signed_unless_guest():
    body = bytes(8)
    unsigned = request(Command.TREE_CONNECT, body=body)
    assert check(unsigned, rules()) == "unsigned TREE_CONNECT on SMB 3.1.1"
    assert check(unsigned, rules(is_guest=True)) is None
    assert check(unsigned, rules(dialect=Dialect.SMB_3_0_2)) is None
    assert check(request(Command.TREE_CONNECT, body=body, sign_with=KEY), rules()) is None


def test_an_encrypted_session_refuses_what_came_in_the_clear():
    assert check(request(sign_with=KEY), rules(encrypt_data=True)) == \
        "unencrypted QUERY_INFO on an encrypted session"
    assert check(request(), rules(encrypt_data=True), encrypted=True) is None


def test_an_encrypted_share_refuses_clear_requests_but_its_tree_connect():
    assert check(request(sign_with=KEY), rules(tree_encrypts=True)) == \
        "unencrypted QUERY_INFO on an encrypted share"
    tree_connect = request(Command.TREE_CONNECT, body=bytes(8), sign_with=KEY)
    assert check(tree_connect, rules(tree_encrypts=True)) is None
    assert check(request(), rules(tree_encrypts=True), encrypted=True) is None


def test_a_sealed_request_needs_no_signature_even_when_signing_is_required():
    assert check(request(), rules(signing_required=True, encrypt_data=True), encrypted=True) \
        is None
