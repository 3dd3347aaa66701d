"""One client TCP connection: framing, NEGOTIATE, sessions, signing, encryption,
credits, compounds, async replies and CANCEL; everything else goes to the
command handlers through the contract in :mod:`smb.server.handler`.

A client can send anything: every frame is bounded before it is read, every
parse error becomes an SMB error status or a closed connection (``ProtocolViolation``),
and a handler that raises is answered INTERNAL_ERROR with one log line.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from smb.server import acceptance, affinity, commands, drain, handoff, workerstate
from smb.server.affinity import ClientAffinity
from smb.server.channels import Channel
from smb.server.compound import Chain, elements, request_file_id, resolve
from smb.server.credits import CreditWindow, charge_refused
from smb.server.framing import frame_prefix
from smb.server.handler import ConnectionInfo, Handler, Reply, Request
from smb.server.negotiation import PRE_NEGOTIATE_MAX_FRAME, Negotiation, Refusal
from smb.server.outgoing import Out
from smb.server.session_setup import SessionSetup
from smb.server.session_table import SessionTable
from smb.server.sessions import Session, filetime_now
from smb.server.transport import OFFLOAD_CRYPTO, Transport
from smb.server.userdb import UserLookup
from smb.server.violation import ProtocolViolation
from smb.wire import crypto, session as session_wire
from smb.wire.crypto import Cipher, CryptoError, Dialect
from smb.wire.header import (
    HEADER_SIZE, PROTOCOL_ID, SMB1_PROTOCOL_ID, TRANSFORM_PROTOCOL_ID, Command, Flags,
    Header, Status, error_body,
)

if TYPE_CHECKING:
    from hanode.config import Config
    from hanode.metrics import WorkerMetrics

log = logging.getLogger(__name__)

RELATED_ID = 0xFFFFFFFFFFFFFFFF
# Messages starting with these may run beside each other (see _dispatch).
_SIDE_BY_SIDE = {Command.READ, Command.WRITE}
# Response flags as plain ints (IntFlag arithmetic per reply is measurably slow).
_RESPONSE_FLAG = int(Flags.SERVER_TO_REDIR)
_ECHOED_FLAGS = int(Flags.RELATED_OPERATIONS | Flags.PRIORITY_MASK)
_LAST_COMMAND = max(Command)


@dataclass(frozen=True)
class Limits:
    """Per-connection bounds, so one client cannot take a worker's memory."""

    max_sessions: int = 64
    max_async: int = 512
    max_credits: int = 8192
    # Until a session is established each frame must arrive within this many
    # seconds, so silent or trickling clients cannot hold connection slots.
    logon_timeout: float = 30.0
    # Pipelined READs and WRITEs processed at the same time.
    max_inflight: int = 32


_COMMAND_NAMES = {int(c): c.name for c in Command}


def _command_name(command: int) -> str:
    return _COMMAND_NAMES.get(command, "UNKNOWN")


@dataclass(slots=True)
class _Call:
    """A handler invocation in flight; CANCEL finds it by MessageId or AsyncId."""

    header: Header
    session: Session | None
    encrypted: Session | None
    allow_async: bool
    prior: list[Out]
    async_id: int = 0
    went_async: bool = False
    # Waiting without an interim response (an element of a compound that is
    # not its last): the receiver reads on, the reply joins the compound.
    detached: bool = False
    cancelled: bool = False
    reply: Reply | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class _Context:
    """What a handler sees (smb.server.handler.CommandContext)."""

    __slots__ = ("config", "connection", "session", "_conn", "_call")

    def __init__(self, conn: "Connection", call: _Call):
        self.config = conn.config
        self.connection = conn.info
        self.session = call.session.info if call.session else None
        self._conn = conn
        self._call = call

    async def go_async(self) -> int:
        return await self._conn._go_async(self._call)

    def is_cancelled(self) -> bool:
        return self._call.cancelled


def _small_body_ok(body: memoryview, name: str, client: str) -> bool:
    """Whether a LOGOFF, ECHO or CANCEL body is well formed (logged when not)."""
    try:
        session_wire.check_small_body(body, name)
    except session_wire.BodyError as exc:
        log.info("%s from %s", exc, client)
        return False
    return True


class Connection:
    def __init__(self, stream: trio.abc.Stream, config: "Config", users: UserLookup,
                 server_guid: bytes, client_address: tuple[str, int] = ("", 0),
                 limits: Limits = Limits(), handlers: dict[int, Handler] | None = None,
                 local_address: tuple[str, int] = ("", 0),
                 metrics: "WorkerMetrics | None" = None, received: bytes = b"",
                 sessions: SessionTable | None = None, clients: ClientAffinity | None = None):
        """``sessions`` and ``clients`` are the worker's, shared by all its
        connections (a connection on its own, as in unit tests, gets its own)."""
        self.config = config
        self._affinity = ClientAffinity() if clients is None else clients
        self._metrics = metrics
        self.info = ConnectionInfo(server_guid=server_guid, client_address=client_address,
                                   local_address=local_address, notify=self.notify)
        self._limits = limits
        self._credits = CreditWindow(limits.max_credits)
        # (MessageId, key) answering a signed request for a session of this
        # worker that is not bound here (see _check_session).
        self._stray: tuple[int, Channel] | None = None
        self._transport = Transport(stream, received, PRE_NEGOTIATE_MAX_FRAME)
        self._negotiation = Negotiation(
            self.info, config.smb.multichannel,
            persistent_handles=any(s.continuous_availability for s in config.shares))
        self._setup = SessionSetup(
            info=self.info, config=config, users=users, negotiation=self._negotiation,
            table=SessionTable() if sessions is None else sessions,
            max_sessions=limits.max_sessions,
            header_for=self._response_header, signer=self._signer, check=self._check_session,
            release=commands.session_closed)
        # This connection's sessions and its channels of them (SessionSetup's).
        self._sessions = self._setup.sessions
        self._channels = self._setup.channels
        self.handed_off = False  # to another worker (see _negotiate)
        self._nursery: trio.Nursery | None = None
        self._receiver: trio.lowlevel.Task | None = None  # the task reading the stream
        self._inflight = trio.Semaphore(limits.max_inflight)
        self._beside = 0  # READs and WRITEs running side by side
        self._detached = 0  # compound elements waiting without an interim response
        self._beside_done = trio.Event()
        # The file commands; tests of the connection layer may pass their own.
        self._handlers = commands.HANDLERS if handlers is None else handlers
        self._sync_calls: dict[int, _Call] = {}
        self._async_calls: dict[int, _Call] = {}
        self._early_cancels: set[int] = set()
        self._next_async = 1
        self._claimed: bytes | None = None  # the multichannel client GUID this one counts for
        self._working = 0  # frames the receivers are handling (see drain)
        self.draining = False  # no more credits: a planned move is about to cut it
        self._finishing = False  # requests that come in are dropped (see drain)
        self.ended = False

    # -- the connection's life -------------------------------------------------------

    async def serve(self) -> None:
        """Run until the client goes away or breaks the protocol."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._receive)
        finally:
            self.ended = True
            with trio.CancelScope(shield=True):
                await self._setup.leave_all()
                await self._release_client()
                await self._transport.stream.aclose()

    async def _receive(self) -> None:
        """Read and process messages in arrival order while this task is the
        connection's receiver.

        A request runs in the receiver's task (no task spawn, no wake-up per
        request) until its handler has to wait (``ctx.go_async``): then a new
        task becomes the receiver and reads on (the acknowledgement the request
        waits for, a CANCEL, other requests), and this one finishes the
        request and ends.  When the client goes away or breaks the protocol,
        the connection ends, with whatever still runs for it.
        """
        me = trio.lowlevel.current_task()
        self._receiver = me
        try:
            while True:
                frame = await self._next_frame()
                if frame is None:
                    break
                if self._finishing or (self.draining and not self._negotiation.negotiated):
                    # Read and dropped: see drain.  A connection that came in on
                    # an address being drained is not answered at all: granted no
                    # credit at NEGOTIATE, cifs.ko would wait 60 s for one even
                    # after the cut; unanswered, it reconnects at the cut.
                    continue
                self._working += 1
                try:
                    await self._handle_frame(frame)
                finally:
                    self._working -= 1
                if self._receiver is not me:
                    return  # handed over while processing: the new receiver reads on
        except ProtocolViolation as exc:
            log.info("closing connection from %s: %s", self.info.client_address[0], exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError,
                ConnectionError):  # the client went away (recv_into raises these raw)
            pass
        self._close()

    async def drain(self, deadline: float) -> bool:
        """Before a planned move cuts this connection: grant no more credits and
        answer what is in flight, or finish the connection (see
        smb.server.drain), until it is drained.  Returns whether it got there
        before ``deadline``.  It stays draining (no credits) until the cut."""
        self.draining = True
        started = trio.current_time()
        while True:
            facts = drain.DrainFacts(
                now=trio.current_time(), started=started, deadline=deadline,
                # A request answered with an interim response waits without
                # the client sending anything for it.
                in_flight=self._working + self._beside - len(self._async_calls),
                partial=self._transport.partial, credits_held=self._credits.available,
                finishing=self._finishing, finished=self._transport.shut, ended=self.ended)
            step = drain.next_step(facts)
            if isinstance(step, drain.StopTaking):
                self._finishing = True
            elif isinstance(step, drain.Shut):
                await self._transport.shut_sending()
            elif isinstance(step, drain.Drained):
                if not step.quiet:
                    log.info("%s not drained in time: %d requests in flight, %s, "
                             "%d credits held, %s, last bytes %.3f s ago",
                             self.info.client_address[0], facts.in_flight,
                             "a request partly in" if facts.partial else "nothing partly in",
                             facts.credits_held,
                             "shut, the client has not closed" if facts.finished else
                             "taking no requests" if facts.finishing else "still taking requests",
                             facts.now - self._transport.last_received)
                return step.quiet
            else:
                await trio.sleep_until(step.until)

    @property
    def local_ip(self) -> str:
        return self.info.local_address[0]

    def close(self) -> None:
        """End the connection (from outside it: a drain the move did not cut)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _hand_over_receiving(self) -> None:
        """A request is about to wait: if it runs in the receiver's task, a new
        task takes over reading the connection (see _receive)."""
        if trio.lowlevel.current_task() is self._receiver:
            self._receiver = None
            assert self._nursery is not None
            self._nursery.start_soon(self._receive)

    async def _next_frame(self) -> bytearray | memoryview | None:
        if any(s.valid for s in self._sessions.values()):
            return await self._transport.receive_message()
        with trio.move_on_after(self._limits.logon_timeout):
            return await self._transport.receive_message()
        raise ProtocolViolation(f"no logon within {self._limits.logon_timeout:g} s")

    async def _handle_frame(self, frame: bytearray | memoryview) -> None:
        proto = bytes(frame[:4])
        if proto == PROTOCOL_ID:
            await self._dispatch(memoryview(frame), None)
        elif proto == TRANSFORM_PROTOCOL_ID:
            session = self._decrypting_session(frame)
            # The frame is this connection's own: the plaintext goes over the
            # ciphertext.  AES releases the GIL, so a large frame is opened in
            # a thread while the event loop sends replies and finishes writes.
            opening = functools.partial(crypto.decrypt, session.decrypt_key, self._negotiation.cipher,
                                        frame, overwrite=True)
            try:
                plain = opening() if len(frame) < OFFLOAD_CRYPTO else \
                    await trio.to_thread.run_sync(opening)
            except CryptoError as exc:
                raise ProtocolViolation(str(exc)) from None
            if plain[:4] != PROTOCOL_ID:
                raise ProtocolViolation("encrypted payload is not an SMB2 message")
            await self._dispatch(memoryview(plain), session)
        elif proto == SMB1_PROTOCOL_ID:
            await self._smb1_negotiate(frame)
        else:
            raise ProtocolViolation("unknown protocol id")

    def _decrypting_session(self, frame: bytearray) -> Session:
        if self.info.dialect < Dialect.SMB_3_0 or self._negotiation.cipher == Cipher.NONE:
            raise ProtocolViolation("encrypted message without negotiated encryption")
        try:
            session_id, _ = crypto.parse_transform(frame)
        except CryptoError as exc:
            raise ProtocolViolation(str(exc)) from None
        session = self._sessions.get(session_id)
        if session is None or not session.decrypt_key:
            raise ProtocolViolation("encrypted message for an unknown session")
        return session

    # -- compounds ------------------------------------------------------------------------

    async def _dispatch(self, msg: memoryview, encrypted: Session | None) -> None:
        """Process a message in order, or beside the ones before it.

        Clients pipeline READs and WRITEs and expect them served in parallel, as
        any server does, so those run side by side (at most ``max_inflight`` at
        once).  Every other message waits until they are done and then runs in
        arrival order, so a CLOSE or SET_INFO sent behind WRITEs acts after
        them; CANCEL goes at once, as it must reach requests still running.

        Any other request runs in the receiver's task until its handler has to
        wait (a CREATE breaking a lease, a blocking lock): then, whether it may
        answer with an interim response or, not being the last of its
        compound, waits without one, the receiving goes on in a new task (see
        _receive), as the acknowledgement it waits for, a CANCEL or any other
        request comes in on this very connection.
        """
        command = msg[12] if len(msg) >= HEADER_SIZE else -1
        if command in _SIDE_BY_SIDE:
            # Without a checkpoint while there is room (a trio Semaphore's
            # acquire always yields): the receiver yields at its next read.
            if self._inflight.value:
                self._inflight.acquire_nowait()
            else:
                await self._inflight.acquire()
            self._beside += 1
            assert self._nursery is not None
            self._nursery.start_soon(self._process_beside, msg, encrypted)
            return
        if command != Command.CANCEL:
            while self._beside:
                await self._beside_done.wait()
        await self._process_chain(msg, encrypted)

    async def _process_beside(self, msg: memoryview, encrypted: Session | None) -> None:
        try:
            await self._process_chain(msg, encrypted)
        except ProtocolViolation as exc:
            log.info("closing connection from %s: %s", self.info.client_address[0], exc)
            self._close()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            self._close()
        finally:
            self._inflight.release()
            self._beside -= 1
            if not self._beside:
                self._beside_done.set()
                self._beside_done = trio.Event()

    def _close(self) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _process_chain(self, msg: memoryview, encrypted: Session | None) -> None:
        """Process a (compound) message and send its reply."""
        outs: list[Out] = []
        chain: Chain | None = None
        for element in elements(msg):
            answered = len(outs)
            chain = await self._process_one(element.message, element.header, chain, encrypted,
                                            outs, last=element.last)
            if self._metrics is not None:
                sent = sum(HEADER_SIZE + len(o.body) + len(o.payload) for o in outs[answered:])
                self._metrics.operation(_command_name(element.header.command),
                                        len(element.message), sent)
        if outs:
            await self._send(outs, encrypted)

    # -- one command ------------------------------------------------------------------

    async def _process_one(self, element: memoryview, header: Header, chain: Chain | None,
                           encrypted: Session | None, outs: list[Out], last: bool) -> Chain:
        command = header.command
        if command == Command.CANCEL:
            # No response of its own (3.3.5.16), so a malformed one is dropped.
            if _small_body_ok(element[HEADER_SIZE:], "CANCEL", self.info.client_address[0]):
                self._cancel(header)
            return chain or Chain()
        if not self._credits.consume(header.message_id, header.credit_charge):
            raise ProtocolViolation(f"MessageId {header.message_id} was not granted")
        if not self._negotiation.negotiated and command != Command.NEGOTIATE:
            raise ProtocolViolation("command before NEGOTIATE")

        body = element[HEADER_SIZE:]
        resolved = resolve(header, chain)
        header, file_id = resolved.header, resolved.file_id
        if resolved.carry is not None:
            return self._fail(outs, header, resolved.refusal, resolved.carry)
        next_chain = Chain(header.session_id, header.tree_id)
        if command > _LAST_COMMAND:
            return self._fail(outs, header, Status.INVALID_PARAMETER, next_chain)

        if command == Command.NEGOTIATE:
            await self._negotiate(element, header, body, outs)
            return next_chain
        if command == Command.SESSION_SETUP:
            await self._setup.setup(element, header, body, encrypted, outs)
            return next_chain

        if charge_refused(self.info.dialect, command, header.credit_charge, body):
            return self._fail(outs, header, Status.INVALID_PARAMETER, next_chain)

        session = self._sessions.get(header.session_id)
        if command == Command.ECHO:  # needs no session; signed when its session signs
            usable = session if session is not None and session.valid else None
            if not _small_body_ok(body, "ECHO", self.info.client_address[0]):
                return self._fail(outs, header, Status.INVALID_PARAMETER, next_chain, usable)
            self._reply(outs, header, Reply(body=session_wire.SMALL_RESPONSE), usable)
            return next_chain
        status = self._check_session(session, element, header, encrypted)
        if status != Status.SUCCESS:
            if status == Status.USER_SESSION_DELETED:
                next_chain.inherited_status = Status.INVALID_PARAMETER
            return self._fail(outs, header, status, next_chain, session)
        assert session is not None
        if command == Command.LOGOFF:
            if not _small_body_ok(body, "LOGOFF", self.info.client_address[0]):
                return self._fail(outs, header, Status.INVALID_PARAMETER, next_chain, session)
            self._reply(outs, header, Reply(body=session_wire.SMALL_RESPONSE), session)
            await self._setup.end(session)
            return next_chain

        handler = self._handlers.get(command)
        if handler is None:
            return self._fail(outs, header, Status.NOT_SUPPORTED, next_chain, session)
        call = _Call(header, session, encrypted, allow_async=last, prior=outs)
        request = Request(header=header, body=body, message=element, related_file_id=file_id)
        reply = await self._call_handler(handler, call, request)
        if reply is None:  # went async: the interim took the earlier replies with it
            return next_chain
        self._reply(outs, header, reply, session)
        next_chain.file_id = reply.file_id if reply.file_id is not None else \
            request_file_id(command, body, file_id)
        if reply.tree_id is not None:
            next_chain.tree_id = reply.tree_id
        if command == Command.CREATE:
            next_chain.inherited_status = reply.status
        return next_chain

    def _check_session(self, session: Session | None, element: memoryview, header: Header,
                       encrypted: Session | None) -> int:
        """Session, signing and encryption checks for commands that need a session (3.3.5.2.9)."""
        if session is None or not session.valid:
            # A signed request for a session of this worker that has no
            # channel here is answered signed with the session's key, as the
            # client, which signed it, wants its answer signed.
            signer = self._setup.session_signer(header, element) if session is None else None
            if signer is not None:
                self._stray = (header.message_id, signer)
            return Status.USER_SESSION_DELETED
        channel = self._channels.get(session.id)
        tree = session.info.trees.get(header.tree_id)
        rules = acceptance.SessionRules(
            signing_required=session.signing_required, encrypt_data=session.info.encrypt_data,
            is_guest=session.info.is_guest, dialect=self.info.dialect,
            signing_key=channel.signing_key if channel is not None else None,
            signing_alg=channel.signing_alg if channel is not None else 0,
            tree_encrypts=getattr(tree, "encrypt_data", False))
        reason = acceptance.refusal(element, header, rules, encrypted is not None)
        if reason is not None:
            log.info("%s from %s", reason, self.info.client_address[0])
            return Status.ACCESS_DENIED
        return Status.SUCCESS

    # -- replies ------------------------------------------------------------------------

    def _response_header(self, header: Header, status: int, *, session_id: int | None = None,
                         tree_id: int | None = None, grant: bool = True) -> Header:
        flags = _RESPONSE_FLAG | (header.flags & _ECHOED_FLAGS)
        return Header(
            command=header.command, message_id=header.message_id, flags=flags, status=status,
            credit_charge=header.credit_charge,
            credits=self._credits.grant(header.credits) if grant and not self.draining else 0,
            tree_id=header.tree_id if tree_id is None else tree_id,
            session_id=header.session_id if session_id is None else session_id,
        )

    def _signer(self, header: Header, session: Session | None) -> Channel | None:
        channel = self._channels.get(session.id) if session is not None else None
        if channel is not None and (header.is_signed or session.signing_required):
            return channel
        stray, self._stray = self._stray, None
        if stray is not None and stray[0] == header.message_id:
            return stray[1]
        return None

    def _reply(self, outs: list[Out], header: Header, reply: Reply,
               session: Session | None) -> None:
        body = reply.body
        if reply.status not in (Status.SUCCESS,) and not body:
            body = error_body()
        outs.append(Out(self._response_header(header, reply.status, tree_id=reply.tree_id),
                         body, reply.payload, self._signer(header, session)))

    def _fail(self, outs: list[Out], header: Header, status: int, chain: Chain,
              session: Session | None = None) -> Chain:
        self._reply(outs, header, Reply(status=status, body=error_body()), session)
        return chain

    async def _send(self, outs: list[Out], encrypted: Session | None) -> None:
        """Send a (compound) reply, sealed for ``encrypted`` when it is set."""
        seal = None if encrypted is None else functools.partial(
            crypto.encrypt, encrypted.encrypt_key, self._negotiation.cipher,
            encrypted.next_nonce(self._negotiation.cipher), encrypted.id)
        await self._transport.send(outs, seal)

    async def notify(self, command: int, body: bytes, session_id: int = 0) -> bool:
        """Send a server-initiated message (MessageId all 0xFF, no credits, unsigned);
        encrypted when ``session_id`` names a session that requires encryption."""
        session = self._sessions.get(session_id)
        encrypted = session if session is not None and session.info.encrypt_data and \
            session.can_encrypt else None
        header = Header(command=command, message_id=RELATED_ID, flags=Flags.SERVER_TO_REDIR,
                        session_id=session_id)
        try:
            await self._send([Out(header, body)], encrypted)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            return False
        return True

    # -- handlers, async and cancel --------------------------------------------------

    async def _call_handler(self, handler: Handler, call: _Call, request: Request) -> Reply | None:
        """Run the handler; returns its reply, or None once it went async."""
        self._sync_calls[call.header.message_id] = call
        if call.header.message_id in self._early_cancels:
            self._early_cancels.discard(call.header.message_id)
            call.cancelled = True
        await self._run_handler(handler, call, request)
        self._sync_calls.pop(call.header.message_id, None)
        return None if call.went_async else call.reply

    async def _invoke(self, handler: Handler, call: _Call, request: Request) -> Reply:
        try:
            reply = await handler(_Context(self, call), request)
            if request.admission is not None and request.admission.keep is not None:
                await request.admission.keep()  # the persistent record, before the answer
            return reply
        except Exception:  # a handler bug must not take the worker down
            # The traceback goes to the log, for whoever fixes the bug; the
            # client learns only that its request failed.
            log.exception("%s handler failed on a request from %s",
                          Command(call.header.command).name, self.info.client_address[0])
            return Reply(status=Status.INTERNAL_ERROR, body=error_body())
        finally:
            if request.admission is not None:  # no longer outstanding on its open
                request.admission.done()

    async def _run_handler(self, handler: Handler, call: _Call, request: Request) -> None:
        """The handler, cancellable once it waits; a call that went async
        sends its final reply itself."""
        reply: Reply | None = None
        try:
            with call.scope:
                reply = await self._invoke(handler, call, request)
        finally:
            if call.detached:
                call.detached = False
                self._detached -= 1
        if reply is None:  # cancelled while it waited
            reply = Reply(status=Status.CANCELLED, body=error_body())
        if not call.went_async:
            call.reply = reply
            return
        self._async_calls.pop(call.async_id, None)
        body = reply.body or (b"" if reply.status == Status.SUCCESS else error_body())
        header = self._response_header(call.header, reply.status, grant=False).evolve(
            flags=Flags.SERVER_TO_REDIR | Flags.ASYNC_COMMAND, async_id=call.async_id)
        try:
            await self._send([Out(header, body, reply.payload,
                                   self._signer(call.header, call.session))], call.encrypted)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _go_async(self, call: _Call) -> int:
        if call.async_id:
            return call.async_id
        call.async_id = self._next_async
        self._next_async += 1
        if len(self._async_calls) + self._detached >= self._limits.max_async:
            return call.async_id  # the receiver waits for it, as for any other
        if not call.allow_async:
            # Stays synchronous, its reply joins its compound; meanwhile the
            # receiver reads on (the acknowledgement it waits for, a CANCEL).
            call.detached = True
            self._detached += 1
            self._hand_over_receiving()
            if call.cancelled:
                call.scope.cancel()
            return call.async_id
        call.went_async = True
        self._async_calls[call.async_id] = call
        interim = self._response_header(call.header, Status.PENDING).evolve(
            flags=Flags.SERVER_TO_REDIR | Flags.ASYNC_COMMAND, async_id=call.async_id)
        outs = call.prior + [Out(interim, error_body(), b"",
                                  self._signer(call.header, call.session))]
        call.prior.clear()
        await self._send(outs, call.encrypted)
        self._hand_over_receiving()
        if call.cancelled:  # a CANCEL that came before the request reached its handler
            call.scope.cancel()
        return call.async_id

    def _cancel(self, header: Header) -> None:
        """CANCEL (3.3.5.16): no reply of its own; the cancelled request answers CANCELLED."""
        if header.is_async:
            call = self._async_calls.get(header.async_id)
        else:
            call = self._sync_calls.get(header.message_id) or next(
                (c for c in self._async_calls.values()
                 if c.header.message_id == header.message_id), None)
        if call is None and not header.is_async:
            # The request may still be on its way to its handler (_dispatch runs
            # messages side by side): remember the cancel for it, within a bound.
            if len(self._early_cancels) >= self._limits.max_credits:
                self._early_cancels.clear()
            self._early_cancels.add(header.message_id)
            return
        if call is None or call.header.session_id != header.session_id:
            return
        call.cancelled = True
        if call.went_async or call.detached:
            call.scope.cancel()

    # -- NEGOTIATE ------------------------------------------------------------------------

    async def _smb1_negotiate(self, frame: bytearray) -> None:
        body = self._negotiation.smb1(frame, now=filetime_now(), salt=os.urandom(32))
        self._transport.frames.max_frame = self._negotiation.max_frame
        self._credits.consume(0, 1)
        request = Header(command=Command.NEGOTIATE, message_id=0, credits=1)
        await self._send([Out(self._response_header(request, Status.SUCCESS), body)], None)

    async def _negotiate(self, element: memoryview, header: Header, body: memoryview,
                         outs: list[Out]) -> None:
        offer = self._negotiation.offer(element, body)
        if isinstance(offer, Refusal):
            log.info("NEGOTIATE from %s refused: %s", self.info.client_address[0], offer.reason)
            self._fail(outs, header, offer.status, Chain())
            return
        first = not header.next_command and header.message_id == 0
        if self._negotiation.may_hand_off(offer, first_message=first):
            await self._serve_where_client_is(offer.request.client_guid, element)
        resp_body = self._negotiation.accept(offer, now=filetime_now(), salt=os.urandom(32))
        self._transport.frames.max_frame = self._negotiation.max_frame
        resp_header = self._response_header(header, Status.SUCCESS)
        self._negotiation.hash_exchange(element, resp_header.pack() + resp_body)
        outs.append(Out(resp_header, resp_body))

    async def _serve_where_client_is(self, client_guid: bytes, element: memoryview) -> None:
        """All connections of a multichannel client go to one worker (the first
        that saw it), where its sessions are: hand this one over if that is
        another worker, NEGOTIATE and all.  Should the hand-off fail, this
        worker serves the connection (a binding would then be refused).

        Only clients that announce multichannel are kept together: the others
        never bind, and their connections keep spreading over the workers."""
        ws = workerstate.current()
        sock = self._transport.sock
        if ws is None or sock is None:
            return
        there = await affinity.claim(self._affinity, ws.node, client_guid,
                                     handoff.address(self.config.node.state_dir, ws.index))
        if there is None:
            self._claimed = client_guid
            return
        frame = frame_prefix(len(element)) + bytes(element) + self._transport.frames.leftover()
        try:
            await handoff.send(there, sock, frame)
        except OSError as exc:
            log.warning("could not hand a connection from %s to its client's worker: %s",
                        self.info.client_address[0], exc)
            return
        self.handed_off = True
        raise ProtocolViolation("handed to the worker that serves its client")

    async def _release_client(self) -> None:
        """This connection counted for its multichannel client (see affinity)."""
        guid, self._claimed = self._claimed, None
        ws = workerstate.current()
        if guid is not None and ws is not None:
            await affinity.release(self._affinity, ws.node, guid)
