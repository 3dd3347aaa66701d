"""Whether a request on a session is signed and sealed as its session and tree
require (MS-SMB2 3.3.5.2.4, 3.3.5.2.9, 3.3.5.2.11, 3.3.5.7).

A pure rule over the request's bytes and what the connection knows of its
session: the signature is checked here (smb.wire.crypto, no I/O), and the
answer is the reason for refusing it, or None.  Every refusal is answered
ACCESS_DENIED, as smbd answers; the reason is for the server's log.  The
connection (smb.server.connection) asks this for every command that needs a
session, after it found the session valid.
"""

from __future__ import annotations

from typing import NamedTuple

from smb.wire import crypto
from smb.wire.crypto import Dialect
from smb.wire.header import Command, Header

# Commands that may arrive unsigned on a session that must sign (a
# re-authentication, a SESSION_SETUP on a valid session, is no such command:
# SESSION_SETUP never comes here).
UNSIGNED_OK = frozenset({Command.NEGOTIATE, Command.CANCEL})


class SessionRules(NamedTuple):
    """What a valid session asks of its requests: ``signing_key`` and
    ``signing_alg`` are those of the session's channel on this connection
    (None when it has none here), ``tree_encrypts`` whether the tree connect the
    request names is of a share that requires encryption.  (A named tuple: one
    is made per request, and a frozen dataclass costs several times as much.)"""

    signing_required: bool
    encrypt_data: bool
    is_guest: bool
    dialect: int
    signing_key: bytes | None = None
    signing_alg: int = 0
    tree_encrypts: bool = False


def refusal(message: bytes | bytearray | memoryview, header: Header, rules: SessionRules,
            encrypted: bool) -> str | None:
    """Why the request (``message``: its header and body as received, the
    signature included) must be refused, or None when it may go on.

    A request that came sealed (``encrypted``, with the session's own key)
    needs no signature; one that came in the clear must be signed when its
    session signs, carry a valid signature when it is signed, and may not
    come so at all on a session or tree that requires encryption.
    """
    if encrypted:
        return None
    command = Command(header.command)
    if header.is_signed:
        if rules.signing_key is not None and not crypto.verify(
                rules.signing_key, rules.signing_alg, message):
            return f"bad signature on {command.name}"
    elif rules.signing_required and rules.signing_key is not None \
            and command not in UNSIGNED_OK:
        return f"unsigned {command.name} on a signed session"
    elif command == Command.TREE_CONNECT and rules.dialect == Dialect.SMB_3_1_1 \
            and not rules.is_guest:
        # 3.1.1 signs every user's tree connect, so that nobody in the middle
        # can turn the client's choice of share (and with it encryption)
        # into another; refused as smbd refuses it.
        return "unsigned TREE_CONNECT on SMB 3.1.1"
    if rules.encrypt_data:
        return f"unencrypted {command.name} on an encrypted session"
    # A tree connect of an encrypted share needs encryption even on a session
    # that does not (3.3.5.2.11).
    if rules.tree_encrypts and command != Command.TREE_CONNECT:
        return f"unencrypted {command.name} on an encrypted share"
    return None
