"""Recorded client/server exchanges (tests/unit/fixtures/*.json) and what they prove.

Each fixture is a list of [direction, hex] pairs ("c" client->server, "s" back),
one per direct-TCP frame, captured once through a logging proxy between a real
client (smbclient 4.17 or smbprotocol) and hanode, user alice, password Secret123.
Replaying the NTLM exchange offline recovers the session key, which then has to
reproduce the real client's signatures and ciphertexts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from smb.wire import ntlm, spnego
from smb.wire.md4 import nt_hash

FIXTURES = Path(__file__).parent / "fixtures"
PASSWORD = "Secret123"


def frames(name: str) -> list[tuple[str, bytes]]:
    return [(d, bytes.fromhex(h)) for d, h in json.loads((FIXTURES / name).read_text())]


@dataclass
class Replayed:
    frames: list[tuple[str, bytes]]
    server: ntlm.NtlmServer
    session_key: bytes
    mech_types_der: bytes
    client_mic: bytes
    server_mic: bytes


def security_buffer(message: bytes) -> bytes:
    body = message[64:]
    offset, length = int.from_bytes(body[12:14], "little"), int.from_bytes(body[14:16], "little")
    if message[12] == 1 and message[16] & 1:  # a SESSION_SETUP response
        offset, length = (int.from_bytes(body[4:6], "little"),
                          int.from_bytes(body[6:8], "little"))
    return message[offset:offset + length]


def replay_ntlm(name: str) -> Replayed:
    """Re-run the server side of the recorded NTLM exchange with the recorded challenge."""
    fr = frames(name)
    init = spnego.parse_client_token(security_buffer(fr[2][1]))
    challenge_resp = spnego.parse_client_token(security_buffer(fr[3][1]))
    final = spnego.parse_client_token(security_buffer(fr[4][1]))
    server_final = spnego.parse_client_token(security_buffer(fr[5][1]))
    challenge = challenge_resp.mech_token
    server = ntlm.NtlmServer(server_challenge=challenge[24:32], timestamp=0,
                             negotiate_message=init.mech_token, challenge_message=challenge)
    server.parse(final.mech_token)
    key = server.verify(nt_hash(PASSWORD))
    return Replayed(fr, server, key, init.mech_types_der, final.mech_list_mic,
                    server_final.mech_list_mic)
