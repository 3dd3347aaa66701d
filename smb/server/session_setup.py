"""SESSION_SETUP and the sessions of one connection (MS-SMB2 3.3.5.5):
authentication legs, re-authentication, binding a channel to a session
established on another connection (multichannel), LOGOFF and
PreviousSessionId, and what a session's end releases.

The connection (smb.server.connection) owns the transport, credits and
signing of replies; it hands this module each SESSION_SETUP and gets its
response back as an :class:`~smb.server.outgoing.Out`.  The worker's
:class:`~smb.server.session_table.SessionTable` finds sessions across the
worker's connections.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Awaitable, Callable

from smb.server import workerstate
from smb.server.channels import BindingConnection, BindTarget, Channel, refusal_before_auth
from smb.server.handler import ConnectionInfo, SessionInfo
from smb.server.negotiation import Negotiation
from smb.server.outgoing import Out
from smb.server.session_table import SessionTable
from smb.server.sessions import AuthResult, Session, authenticate
from smb.server.userdb import UserLookup
from smb.wire import crypto, negotiate, session as session_wire
from smb.wire.crypto import Dialect
from smb.wire.header import Header, Status, error_body

if TYPE_CHECKING:
    from hanode.config import Config

log = logging.getLogger(__name__)

# What the connection lends: a response header (with its credits), the key a
# response is signed with, and the session/signing/encryption checks.
HeaderFor = Callable[..., Header]
SignerFor = Callable[[Header, "Session | None"], "Channel | None"]
SessionCheck = Callable[["Session | None", memoryview, Header, "Session | None"], int]
Release = Callable[[SessionInfo], Awaitable[None]]


def _status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"{status:#x}"


class SessionSetup:
    """The sessions of one connection and their SESSION_SETUP exchanges."""

    def __init__(self, *, info: ConnectionInfo, config: "Config", users: UserLookup,
                 negotiation: Negotiation, table: SessionTable, max_sessions: int,
                 header_for: HeaderFor, signer: SignerFor, check: SessionCheck,
                 release: Release) -> None:
        self._info = info
        self._config = config
        self._users = users
        self._negotiation = negotiation
        self._table = table
        self._max_sessions = max_sessions
        self._header_for = header_for
        self._signer = signer
        self._check = check
        self._release = release
        self.sessions: dict[int, Session] = {}
        # This connection's channel of each of its sessions that signs, and
        # the binding exchanges in progress on it (by session id).
        self.channels: dict[int, Channel] = {}
        self._binds: dict[int, Session] = {}

    def _error(self, header: Header, status: int, session: Session | None = None) -> Out:
        return Out(self._header_for(header, status), error_body(), b"",
                   self._signer(header, session))

    def any_valid(self) -> bool:
        return any(s.valid for s in self.sessions.values())

    async def leave_all(self) -> None:
        """The connection closed: each of its sessions loses this channel."""
        for session in list(self.sessions.values()):
            await self.leave(session)

    async def setup(self, element: memoryview, header: Header, body: memoryview,
                             encrypted: Session | None, outs: list[Out]) -> None:
        try:
            req = session_wire.parse_session_setup(body, element)
        except session_wire.BodyError:
            outs.append(self._error(header, Status.INVALID_PARAMETER))
            return
        if req.flags & session_wire.SESSION_SETUP_BINDING:
            await self._bind(element, header, req, outs)
            return
        existing = self.sessions.get(header.session_id) if header.session_id else None
        if header.session_id and (existing is None or existing.deleted):
            signer = self._signer(header, existing) if existing is not None else \
                self.session_signer(header, element)
            outs.append(Out(self._header_for(header, Status.USER_SESSION_DELETED),
                             error_body(), b"", signer))
            return
        reauth = existing is not None and existing.valid
        if reauth:
            status = self._check(existing, element, header, encrypted)
            if status != Status.SUCCESS:
                outs.append(self._error(header, status, existing))
                return
            # Re-authentication: a fresh exchange, kept across its legs; the
            # session keeps its keys (MS-SMB2 3.3.5.5.2).
            if existing.reauth is None:
                existing.reauth = Session(existing.id, SessionInfo(existing.id, ""),
                                          self._negotiation.preauth)
            session = existing.reauth
        elif existing is not None:
            session = existing
        else:
            if len(self.sessions) >= self._max_sessions:
                outs.append(self._error(header, Status.INSUFFICIENT_RESOURCES))
                return
            session = self._new_session()
        result, resp_header = await self._authenticate(element, header, req, session)
        # A re-authentication is answered signed as its request was.
        signer = self._signer(header, existing) if reauth else None
        if result.status == Status.MORE_PROCESSING_REQUIRED:
            outs.append(self._interim(session, resp_header, result.token, signer))
            return
        if result.status != Status.SUCCESS:
            # A failed re-authentication ends the session, on all its channels.
            if reauth:
                await self.end(existing, keep_channels=True)
            else:
                self.sessions.pop(session.id, None)
            outs.append(Out(resp_header, error_body(), b"", signer))
            return
        if reauth:
            existing.info.user = session.info.user
            existing.reauth = None
            session = existing
        else:
            session.dialect, session.cipher = self._info.dialect, self._negotiation.cipher
            session.signing_alg = self._negotiation.signing_alg
            self._join(session, session.signing_key)
        log.info("session %#x for %r from %s", session.id, session.info.user or "anonymous",
                 self._info.client_address[0])
        self._table.add(self, session)
        if req.previous_session_id and req.previous_session_id != session.id:
            await self._logoff_previous(req.previous_session_id, session.info.user)
        outs.append(Out(resp_header, self._setup_body(session, result.token), b"",
                         self.channels.get(session.id)))

    async def _authenticate(self, element: memoryview, header: Header,
                            req: session_wire.SessionSetupRequest,
                            session: Session) -> tuple[AuthResult, Header]:
        """One leg of ``session``'s exchange: the result and the response header."""
        dialect = self._info.dialect
        if dialect == Dialect.SMB_3_1_1:
            session.preauth = crypto.preauth_update(session.preauth, element)
        result = await authenticate(
            session, req.security_buffer, self._users, allow_guest=self._config.smb.allow_guest,
            dialect=dialect, cipher=self._negotiation.cipher,
            client_signing_required=bool(
                req.security_mode & negotiate.SecurityMode.SIGNING_REQUIRED))
        return result, self._header_for(header, result.status, session_id=session.id)

    def _interim(self, session: Session, resp_header: Header, token: bytes,
                 sign_with: Channel | None = None) -> Out:
        """A MORE_PROCESSING_REQUIRED response, hashed (3.1.1) as it goes on the wire."""
        resp_body = session_wire.session_setup_response(0, token)
        if self._info.dialect == Dialect.SMB_3_1_1:
            sent = bytearray(resp_header.pack())
            if sign_with is not None:
                crypto.sign_header(sign_with.signing_key, sign_with.signing_alg, sent,
                                   [resp_body])
            session.preauth = crypto.preauth_update(session.preauth, bytes(sent) + resp_body)
        return Out(resp_header, resp_body, b"", sign_with)

    @staticmethod
    def _setup_body(session: Session, token: bytes) -> bytes:
        flags = 0
        if session.info.is_guest:
            flags = session_wire.SessionFlags.IS_NULL if session.is_anonymous else \
                session_wire.SessionFlags.IS_GUEST
        if session.info.encrypt_data:
            flags |= session_wire.SessionFlags.ENCRYPT_DATA
        return session_wire.session_setup_response(flags, token)

    # -- channels (binding, MS-SMB2 3.3.5.5.2) ---------------------------------------------

    async def _bind(self, element: memoryview, header: Header,
                    req: session_wire.SessionSetupRequest, outs: list[Out]) -> None:
        """One leg of binding this connection to a session set up on another one.

        Every leg is signed with the key this connection knows the session by
        (its own channel's once bound, else the session's) and answered so;
        a refusal leaves the session as it was on its other channels.
        """
        session = self._table.get(header.session_id)
        if session is not None and not session.valid:
            session = None
        verifier = self._session_key(header)
        if verifier is not None and not crypto.verify(verifier.signing_key,
                                                      verifier.signing_alg, element):
            log.info("bad signature on a binding SESSION_SETUP from %s",
                     self._info.client_address[0])
            outs.append(Out(self._header_for(header, Status.ACCESS_DENIED), error_body(),
                             b"", verifier))
            return
        target = None if session is None else BindTarget(
            session.dialect, session.signing_alg, session.cipher, session.info.is_guest)
        status = refusal_before_auth(
            target, BindingConnection(self._info.dialect, self._negotiation.signing_alg, self._negotiation.cipher),
            session_id=header.session_id, signed=header.is_signed,
            multichannel=self._config.smb.multichannel)
        if status is None and session is not None and session.id in self.channels:
            status = Status.REQUEST_NOT_ACCEPTED  # bound here already
        if status is not None:
            log.info("binding of session %#x from %s refused: %s", header.session_id,
                     self._info.client_address[0], _status_name(status))
            self._binds.pop(header.session_id, None)
            outs.append(Out(self._header_for(header, status), error_body(), b"",
                             verifier))
            return
        assert session is not None
        pending = self._binds.get(session.id)
        if pending is None:
            pending = self._binds[session.id] = Session(
                session.id, SessionInfo(session.id, ""), self._negotiation.preauth)
        result, resp_header = await self._authenticate(element, header, req, pending)
        if result.status == Status.MORE_PROCESSING_REQUIRED:
            outs.append(self._interim(pending, resp_header, result.token, verifier))
            return
        del self._binds[session.id]
        if result.status == Status.SUCCESS and (
                pending.info.is_guest or pending.info.user != session.info.user):
            log.info("binding of session %#x refused: authenticated as %r, not %r",
                     session.id, pending.info.user, session.info.user)
            resp_header = resp_header.evolve(status=Status.ACCESS_DENIED)
        if resp_header.status == Status.SUCCESS and (
                not session.valid or not self._table.holds(session)):
            # Logged off (or torn down by a PreviousSessionId) while this leg
            # authenticated: there is nothing left to bind to.
            resp_header = resp_header.evolve(status=Status.USER_SESSION_DELETED)
        if resp_header.status != Status.SUCCESS:
            outs.append(Out(resp_header, error_body(), b"", verifier))
            return
        self._join(session, pending.signing_key)
        log.info("session %#x gains a channel from %s", session.id, self._info.client_address[0])
        outs.append(Out(resp_header, self._setup_body(session, result.token), b"",
                         self.channels[session.id]))

    def _session_key(self, header: Header) -> Channel | None:
        """The key a signed request naming a session of this worker verifies
        with and is answered with: this connection's channel of it, else the
        session's own key (a binding, or a request on a connection the session
        is not bound to); None when unsigned or unknown."""
        session = self._table.get(header.session_id)
        if not header.is_signed or session is None or not session.can_sign:
            return None
        return self.channels.get(session.id) or Channel(session.signing_key,
                                                         session.signing_alg)

    def session_signer(self, header: Header, element: memoryview) -> Channel | None:
        """``_session_key`` when the request verifies with it."""
        key = self._session_key(header)
        if key is None or not crypto.verify(key.signing_key, key.signing_alg, element):
            return None
        return key

    def _join(self, session: Session, signing_key: bytes) -> None:
        """Make this connection one of ``session``'s channels."""
        self.sessions[session.id] = session
        if signing_key:
            self.channels[session.id] = Channel(signing_key, self._negotiation.signing_alg)
        session.connections.append(self)

    async def leave(self, session: Session) -> None:
        """This connection goes away: the session loses this channel, and ends
        with its last one."""
        self.sessions.pop(session.id, None)
        self.channels.pop(session.id, None)
        self._binds.pop(session.id, None)
        if self in session.connections:
            session.connections.remove(self)
        if session.deleted:
            return
        if session.connections:
            self._table.reach_through(self, session, session.connections[0])
            return
        self._table.forget(session)
        await self._release(session.info)

    async def end(self, session: Session, *, keep_channels: bool = False) -> None:
        """LOGOFF, a later setup naming it as previous, or a failed
        re-authentication: the session ends on every channel.

        ``keep_channels``: the channels keep it, ended, and answer what its
        client still sends there USER_SESSION_DELETED signed with their keys
        (smbtorture's client wants those answers signed, and smbd signs them).
        """
        if keep_channels:
            session.valid = False
            session.deleted = True
        else:
            for conn in [*session.connections, self]:
                conn.sessions.pop(session.id, None)
                conn.channels.pop(session.id, None)
                conn._binds.pop(session.id, None)
            session.connections.clear()
        self._table.forget(session)
        await self._release(session.info)

    async def _logoff_previous(self, session_id: int, user: str) -> None:
        """Tear down a client's earlier session, so its durable opens become reclaimable.

        It may live in this worker or in another worker of the node, which is
        asked through the node table (its client may come back on any of them).
        """
        if await self._table.logoff(session_id, user):
            return
        ws = workerstate.current()
        if ws is not None:
            await ws.logoff_elsewhere(session_id, user)

    async def drop_session(self, session: Session) -> None:
        """Another connection's SESSION_SETUP named this session as its previous one."""
        if session.id in self.sessions:
            await self.end(session)

    def _new_session(self) -> Session:
        # 32 bits, as Samba's: smbtorture (sessid.c) keeps session ids in a uint32_t.
        while True:
            session_id = int.from_bytes(os.urandom(4), "little")
            if 0 < session_id < 0xFFFFFFFF and session_id not in self._table \
                    and session_id not in self.sessions:
                break
        session = Session(session_id, SessionInfo(session_id, ""), self._negotiation.preauth)
        self.sessions[session_id] = session
        return session
