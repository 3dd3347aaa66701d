"""Channels of a session (MS-SMB2 3.3.5.5.2): one session, several connections.

A multichannel client binds further connections to a session it set up on
one connection.  Each binding connection is a channel with a signing key of
its own (derived from the key of the binding's own authentication); the
session's encryption keys, trees and opens are shared by all its channels.

What a binding must match is decided here, as a pure rule, so that the
statuses smbtorture's smb2.session.bind_negative_* expect (and Samba and
Windows answer) can be read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smb.wire.crypto import Dialect, SigningAlgorithm
from smb.wire.header import Status


@dataclass(eq=False)
class Channel:
    """A session as one connection uses it: the key and algorithm that connection
    signs with (a binding request is answered with the session's own)."""

    signing_key: bytes = field(repr=False)
    signing_alg: int


@dataclass(frozen=True)
class BindTarget:
    """What the session being bound was set up with, on its first connection."""

    dialect: int
    signing_alg: int
    cipher: int
    is_guest: bool


@dataclass(frozen=True)
class BindingConnection:
    """What the connection asking to bind negotiated."""

    dialect: int
    signing_alg: int
    cipher: int


def refusal_before_auth(target: BindTarget | None, conn: BindingConnection, *,
                        session_id: int, signed: bool, multichannel: bool) -> int | None:
    """The status refusing a binding SESSION_SETUP before any authentication,
    or None when the exchange may go on.

    The order matters as much as the statuses: a client that tries several
    wrong things at once is told the first one in this list.
    """
    # A GMAC session cannot gain a channel that signs otherwise, nor a GMAC
    # channel join a session that does not sign with GMAC (the nonce of GMAC
    # signatures makes the two sides disagree on what a signature covers).
    if target is not None:
        if target.signing_alg == SigningAlgorithm.AES_GMAC and \
                conn.signing_alg != target.signing_alg:
            return Status.REQUEST_OUT_OF_SEQUENCE
        if conn.signing_alg == SigningAlgorithm.AES_GMAC and \
                target.signing_alg != conn.signing_alg:
            return Status.NOT_SUPPORTED
    if conn.dialect < Dialect.SMB_3_0 or not multichannel:
        return Status.REQUEST_NOT_ACCEPTED
    if session_id == 0:
        return Status.INVALID_PARAMETER
    if target is None:
        return Status.USER_SESSION_DELETED
    if not signed:
        return Status.INVALID_PARAMETER
    if target.dialect != conn.dialect or target.cipher != conn.cipher:
        return Status.INVALID_PARAMETER
    if target.is_guest:
        return Status.NOT_SUPPORTED
    return None
