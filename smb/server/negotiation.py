"""NEGOTIATE on one connection (MS-SMB2 3.3.5.3, 3.3.5.4) as pure state:
the SMB1 upgrade, the dialect and its sizes, the cipher and signing
algorithm, and the 3.1.1 preauthentication hash of the exchange.

Bytes in, response bodies out; the clock and the salt are passed in, and
whatever needs I/O (handing the connection to the worker that serves its
multichannel client) is left to the connection, which asks
:meth:`Negotiation.may_hand_off`.
"""

from __future__ import annotations

from dataclasses import dataclass

from smb.server.handler import ConnectionInfo
from smb.server.violation import ProtocolViolation
from smb.wire import crypto, negotiate, spnego
from smb.wire.crypto import Cipher, Dialect, SigningAlgorithm
from smb.wire.header import Status

PRE_NEGOTIATE_MAX_FRAME = 64 * 1024
LARGE_MAX_SIZE = 8 * 1024 * 1024
SMALL_MAX_SIZE = 64 * 1024
# Room for a request's header, its body and a transform header beyond the
# largest READ/WRITE payload the connection announced.
FRAME_SLACK = 64 * 1024 + crypto.TRANSFORM_HEADER_SIZE


@dataclass(frozen=True)
class Refusal:
    """A NEGOTIATE answered with an error status, and why (for the log)."""

    status: int
    reason: str


@dataclass(frozen=True)
class Offer:
    """A NEGOTIATE request the server can answer, and its choice."""

    request: negotiate.NegotiateRequest
    choice: negotiate.Choice


class Negotiation:
    def __init__(self, info: ConnectionInfo, multichannel: bool,
                 persistent_handles: bool = False) -> None:
        self.info = info
        self.multichannel = multichannel
        # Some share is continuously available (issue 14): 3.x connections are
        # told the server keeps persistent handles.  Not advertised otherwise,
        # since clients then expect replays answered as a CA server answers them.
        self.persistent_handles = persistent_handles
        self.negotiated = False
        # Answered an SMB1 NEGOTIATE with 0x02FF: an SMB2 NEGOTIATE is due.
        self.wildcard = False
        self.cipher = Cipher.NONE
        self.signing_alg = SigningAlgorithm.HMAC_SHA256
        # The 3.1.1 hash of NEGOTIATE and its response, where each session's starts.
        self.preauth = crypto.PREAUTH_INITIAL
        self.max_frame = PRE_NEGOTIATE_MAX_FRAME

    # -- SMB1 ----------------------------------------------------------------------------

    def smb1(self, frame: bytes | bytearray | memoryview, *, now: int, salt: bytes) -> bytes:
        """An SMB1 NEGOTIATE offering SMB2: the SMB2 NEGOTIATE response body
        (dialect 0x02FF, or the one 2.0.2 it offers)."""
        if self.negotiated or self.wildcard:
            raise ProtocolViolation("SMB1 NEGOTIATE after negotiation")
        dialect = negotiate.smb1_upgrade_dialect(negotiate.smb1_dialects(frame) or [])
        if dialect is None:
            raise ProtocolViolation("SMB1 client without SMB2 dialects")
        choice = negotiate.Choice(dialect)
        if dialect == Dialect.WILDCARD:
            self.wildcard = True
        else:
            # What the client will claim in FSCTL_VALIDATE_NEGOTIATE_INFO: no
            # capabilities, GUID or security mode (SMB1 carried none), one dialect.
            self.info.client_dialects = (dialect,)
            self._settle(dialect, choice)
        return self._response(dialect, choice, now=now, salt=salt)

    # -- SMB2 ----------------------------------------------------------------------------

    def offer(self, element: memoryview, body: memoryview) -> Offer | Refusal:
        """Parse and decide an SMB2 NEGOTIATE: what to answer, or the refusal
        (INVALID_PARAMETER for a malformed one, NOT_SUPPORTED when no dialect
        is shared)."""
        if self.negotiated:
            raise ProtocolViolation("second NEGOTIATE")
        try:
            request = negotiate.parse_request(body, element)
            choice = negotiate.choose(request)
        except negotiate.NegotiateError as exc:
            return Refusal(Status.INVALID_PARAMETER, str(exc))
        if choice is None:
            return Refusal(Status.NOT_SUPPORTED, "no dialect in common")
        return Offer(request, choice)

    def may_hand_off(self, offer: Offer, *, first_message: bool) -> bool:
        """Whether this connection may go to the worker that serves its client
        (multichannel, 3.x): only its first message can be handed over, as
        the receiving worker's credit window starts at MessageId 0 (an SMB1
        upgrade is served where it came; a binding from it is then refused)."""
        return (self.multichannel and first_message and not self.wildcard
                and offer.choice.dialect >= Dialect.SMB_3_0
                and bool(offer.request.capabilities & negotiate.Capabilities.MULTI_CHANNEL)
                and offer.request.client_guid != bytes(16))

    def accept(self, offer: Offer, *, now: int, salt: bytes) -> bytes:
        """Settle on ``offer``: the response body."""
        req, choice = offer.request, offer.choice
        info = self.info
        info.client_guid = req.client_guid
        info.client_capabilities = req.capabilities
        info.client_security_mode = req.security_mode
        info.client_dialects = tuple(req.dialects)
        self._settle(choice.dialect, choice)
        if Dialect.SMB_3_0 <= choice.dialect < Dialect.SMB_3_1_1 and choice.cipher != Cipher.NONE:
            info.server_capabilities |= negotiate.Capabilities.ENCRYPTION
        return self._response(choice.dialect, choice, now=now, salt=salt)

    def hash_exchange(self, request: memoryview, response: bytes) -> None:
        """3.1.1: the preauthentication hash of the NEGOTIATE request and the
        response exactly as sent (header and body)."""
        if self.info.dialect == Dialect.SMB_3_1_1:
            self.preauth = crypto.preauth_update(
                crypto.preauth_update(crypto.PREAUTH_INITIAL, request), response)

    # -- state -----------------------------------------------------------------------------

    def _settle(self, dialect: int, choice: negotiate.Choice) -> None:
        info = self.info
        info.dialect = dialect
        size = SMALL_MAX_SIZE if dialect == Dialect.SMB_2_0_2 else LARGE_MAX_SIZE
        info.max_transact_size = info.max_read_size = info.max_write_size = size
        info.security_mode = negotiate.SecurityMode.SIGNING_ENABLED
        info.server_capabilities = 0 if dialect == Dialect.SMB_2_0_2 else \
            negotiate.Capabilities.LARGE_MTU | negotiate.Capabilities.LEASING
        if dialect >= Dialect.SMB_3_0 and self.multichannel:
            info.server_capabilities |= negotiate.Capabilities.MULTI_CHANNEL
        if dialect >= Dialect.SMB_3_0 and self.persistent_handles:
            info.server_capabilities |= negotiate.Capabilities.PERSISTENT_HANDLES
        self.cipher = choice.cipher
        self.signing_alg = choice.signing
        self.negotiated = True
        self.wildcard = False
        self.max_frame = size + FRAME_SLACK

    def _response(self, dialect: int, choice: negotiate.Choice, *, now: int,
                  salt: bytes) -> bytes:
        info = self.info
        wildcard = dialect == Dialect.WILDCARD
        return negotiate.NegotiateResponse(
            security_mode=negotiate.SecurityMode.SIGNING_ENABLED, dialect=dialect,
            server_guid=info.server_guid,
            capabilities=0 if wildcard else info.server_capabilities,
            max_transact_size=SMALL_MAX_SIZE if wildcard else info.max_transact_size,
            max_read_size=SMALL_MAX_SIZE if wildcard else info.max_read_size,
            max_write_size=SMALL_MAX_SIZE if wildcard else info.max_write_size,
            system_time=now, security_buffer=spnego.server_init_token(), salt=salt,
            cipher=choice.cipher if choice.answer_cipher else None,
            signing=choice.signing if choice.answer_signing else None,
        ).pack()
