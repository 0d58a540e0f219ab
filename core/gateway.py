"""The gateway: the WebSocket accept loop and one session per station connection.

Failure containment, in one place:

* Each connection runs in its own handler; any exception in it (a bad handshake, a peer that
  vanishes mid-frame, a bug in a plugin) is logged and recorded, closes that connection only,
  and never reaches the accept loop. That is why we own the accept loop
  (``trio.serve_tcp`` + ``wrap_server_stream``) instead of ``trio_websocket.serve_websocket``,
  whose handler errors end the whole server.
* A station CALL is answered only after the CALL and its answer are committed. When the store
  fails, the session is closed (1011) without answering: nothing unrecorded is acknowledged.
* A CALL we send is committed before it leaves; it waits at most ``call_timeout`` for its
  answer; the timeout is recorded; a late or unknown CALLRESULT is recorded and ignored.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import unquote

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

from chargeledger.core.allocator import TransactionIdAllocator
from chargeledger.core.commands import Command
from chargeledger.core.decide import Answered, decide_call, error_text, reply_text
from chargeledger.core.errors import (
    CallError,
    CallTimeout,
    FrameError,
    StationBusy,
    StationOffline,
    StoreUnavailable,
)
from chargeledger.core.events import (
    CallTimedOut,
    FrameLogged,
    HandshakeRejected,
    Recorded,
    SessionClosed,
    SessionOpened,
    session_stream,
)
from chargeledger.core.frames import (
    Call,
    CallResult,
    encode_call,
    parse_frame,
    to_wire,
)
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.security import Admitted, Refused, admit, server_ssl_context, transport_of
from chargeledger.core.settings import Settings
from chargeledger.core.writer import GroupCommitWriter
from chargeledger.projections import Credentials, Views
from chargeledger.schemas import OCPP16, OCPP201

__all__ = ["Gateway", "OutboundCall", "Session", "station_identity"]

log = logging.getLogger("chargeledger.gateway")

SUBPROTOCOL_PREFERENCE = (OCPP201, OCPP16)
"""When a station offers several versions we speak, the newest wins."""

CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_NO_STATUS = 1006


CLOSE_HANDSHAKE_TIMEOUT = 1.0
"""How long we wait for the peer's close frame; a dead peer never sends one."""


TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a peer has to complete its TLS handshake before it is dropped."""

PASSWORD_CHECKS = 2
"""Password checks run at once (each takes about 25 ms of CPU and 19 MiB: argon2id)."""

BASIC_CHALLENGE = b'Basic realm="ChargeLedger", charset="UTF-8"'


def _peer(stream: trio.abc.Stream) -> object:
    """The ``trio_websocket`` endpoint of the peer of a socket stream."""
    socket = getattr(stream, "socket", None)
    if socket is None:
        return repr(stream)
    address, port, *_ = socket.getpeername()
    return Endpoint(address, port, False)


def _address(endpoint: object) -> str:
    """``host:port`` of a trio-websocket endpoint (its repr is not meant for logs)."""
    address, port = getattr(endpoint, "address", None), getattr(endpoint, "port", None)
    return f"{address}:{port}" if address is not None else str(endpoint)


MAX_IDENTITY_LENGTH = 48
"""The longest station identity we accept, in characters: OCPP's identifierString(48)."""


def station_identity(path: str) -> str:
    """The station identity: the last non-empty segment of the URL path, percent-decoded.

    The path is split on ``/`` before decoding, so an escaped slash belongs to the identity
    (``/ocpp/CP%2F01`` -> ``CP/01``); ``+`` is a literal plus, not a space (``unquote``, not
    ``unquote_plus``); a ``%`` not followed by two hex digits stays as it is; the query string
    is ignored. Empty when there is no segment. Raises ``UnicodeDecodeError`` when the escapes
    do not decode as UTF-8 (``/ocpp/%FF``): such an identity is refused, never mangled into
    U+FFFD. The length limit is the handshake's to enforce (``MAX_IDENTITY_LENGTH``)."""
    path = path.split("?", 1)[0]
    segments = [segment for segment in path.split("/") if segment]
    return unquote(segments[-1], errors="strict") if segments else ""


def _identity_problem(path: str) -> tuple[str, str]:
    """The station identity in ``path`` and why it is refused (empty when it is acceptable).

    The identity comes back empty when it cannot be decoded, so nothing mangled is recorded."""
    try:
        station = station_identity(path)
    except UnicodeDecodeError:
        return "", "the station identity in the URL path is not valid UTF-8 once percent-decoded"
    if not station:
        return "", "no station identity in the URL path"
    if len(station) > MAX_IDENTITY_LENGTH:
        return station, (
            f"the station identity is {len(station)} characters long;"
            f" at most {MAX_IDENTITY_LENGTH} are allowed"
        )
    return station, ""


class OutboundCall:
    """A CALL to a station, waiting in the station's queue or for its answer."""

    def __init__(self, action: str, payload: dict[str, Any]) -> None:
        self.action = action
        self.payload = payload
        self.message_id = str(uuid.uuid4())
        self._done = trio.Event()
        self.result: dict[str, Any] | None = None
        self.error: Exception | None = None

    def resolve(self, result: dict[str, Any] | None, error: Exception | None = None) -> None:
        if not self._done.is_set():
            self.result, self.error = result, error
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> dict[str, Any]:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Session:
    """One accepted WebSocket connection of one station.

    The session task is the only writer of its stream. It reads frames one at a time (a
    station may have one CALL outstanding, so answering in order costs nothing), sends our
    CALLs from a queue one at a time, and pings the station to detect a dead peer. Whatever
    ends it (the peer, a ping timeout, a newer connection, the store, shutdown), it records
    exactly one ``SessionClosed``.
    """

    def __init__(
        self, gateway: Gateway, ws: WebSocketConnection, station: str, protocol: str
    ) -> None:
        self.gateway = gateway
        self.ws = ws
        self.station = station
        self.protocol = protocol
        self.id = str(uuid.uuid4())
        self.stream = session_stream(self.id)
        self.outbound_send, self.outbound_receive = trio.open_memory_channel[OutboundCall](
            gateway.settings.outbound_queue
        )
        self.in_flight: OutboundCall | None = None
        self.cancel_scope = trio.CancelScope()
        # Why the session ended, when we ended it: (close code, reason, replaced_by).
        self.close_cause: tuple[int, str, str | None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; never raises except Cancelled.

        A commit that fails (``StoreUnavailable`` from any of the session's tasks) closes the
        connection with 1011 "event store unavailable", whatever else failed with it; any other
        exception closes it with 1011 "internal error" unless a cause was already set. The
        session's tasks run in a nursery, so their exceptions arrive as an exception group:
        hence ``except*``."""
        try:
            with self.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._send_calls)
                    nursery.start_soon(self._keepalive)
                    await self._read_frames()
                    nursery.cancel_scope.cancel()
        except* StoreUnavailable:
            log.error("store failed; closing session of %s", self.station)
            self.close_cause = (CLOSE_INTERNAL_ERROR, "event store unavailable", None)
        except* Exception:
            log.exception("session of %s failed", self.station)
            self.close_cause = self.close_cause or (CLOSE_INTERNAL_ERROR, "internal error", None)
        finally:
            with trio.CancelScope(shield=True):
                await self._finish()

    def end(self, code: int, reason: str, replaced_by: str | None = None) -> None:
        """Ask the session to close with ``code`` and ``reason`` (recorded)."""
        if self.close_cause is None:
            self.close_cause = (code, reason, replaced_by)
        self.cancel_scope.cancel()

    async def _finish(self) -> None:
        self.outbound_send.close()
        if self.in_flight is not None:
            self.in_flight.resolve(None, self._gone(self.in_flight))
        while True:
            try:
                queued = self.outbound_receive.receive_nowait()
                queued.resolve(None, self._gone(queued))
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        by: Literal["station", "csms"]
        if self.close_cause is None and self.ws.closed is None:
            # Nobody closed the connection: we were cancelled, i.e. the server is stopping.
            self.close_cause = (CLOSE_GOING_AWAY, "server shutting down", None)
        if self.close_cause is not None:
            code, reason, replaced_by = self.close_cause
            by = "csms"
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                await self.ws.aclose(code, reason)
        else:
            closed = self.ws.closed
            code = closed.code if closed is not None else CLOSE_NO_STATUS
            reason = (closed.reason or "") if closed is not None else ""
            replaced_by, by = None, "station"
            if code == CLOSE_MESSAGE_TOO_BIG:  # trio-websocket closed it for us
                reason, by = (
                    f"frame larger than {self.gateway.settings.max_frame_bytes} bytes",
                    "csms",
                )
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                await self.ws.aclose()
        self.gateway.forget(self)
        event = SessionClosed(
            station=self.station,
            session=self.id,
            at=time.time(),
            code=code,
            reason=reason,
            by=by,
            replaced_by=replaced_by,
        )
        try:
            with trio.move_on_after(10):
                await self.gateway.writer.append([(self.stream, event)])
        except StoreUnavailable:
            log.error("could not record the close of %s's session", self.station)

    async def _keepalive(self) -> None:
        settings = self.gateway.settings
        if settings.ping_interval <= 0:
            return
        while True:
            await trio.sleep(settings.ping_interval)
            with trio.move_on_after(settings.ping_timeout) as scope:
                try:
                    await self.ws.ping()
                except ConnectionClosed:
                    return  # the reader sees the close too and ends the session
            if scope.cancelled_caught:
                self.end(CLOSE_GOING_AWAY, "no pong: dead peer")
                return

    # -- frames from the station ---------------------------------------------------------

    async def _log(self, *frames: FrameLogged | CallTimedOut) -> list[Recorded]:
        return await self.gateway.writer.append([(self.stream, frame) for frame in frames])

    def _frame(self, direction: str, text: str, note: str | None = None) -> FrameLogged:
        return FrameLogged(
            station=self.station,
            session=self.id,
            at=time.time(),
            direction="in" if direction == "in" else "out",
            text=text,
            note=note,
        )

    async def _read_frames(self) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                return
            if isinstance(message, bytes):
                await self._log(
                    FrameLogged(
                        station=self.station,
                        session=self.id,
                        at=time.time(),
                        direction="in",
                        text="",
                        binary=base64.b64encode(message).decode(),
                        note="binary",
                    )
                )
                self.end(CLOSE_UNSUPPORTED_DATA, "OCPP-J uses text frames only")
                return
            await self._handle_text(message)

    async def _handle_text(self, text: str) -> None:
        inbound = self._frame("in", text)
        try:
            frame = parse_frame(text, self.protocol)
        except FrameError as exc:
            await self._answer(inbound, exc.message_id, self._error_text(exc), "malformed")
            return
        if isinstance(frame, Call):
            await self._handle_call(inbound, frame)
            return
        call = self.in_flight
        if call is not None and frame.message_id == call.message_id:
            await self._log(inbound)
            if isinstance(frame, CallResult):
                call.resolve(frame.payload)
            else:
                error = CallError(
                    frame.code,
                    frame.description,
                    frame.details,
                    station=self.station,
                    action=call.action,
                )
                call.resolve(None, error)
        else:
            await self._log(
                FrameLogged(
                    station=inbound.station,
                    session=inbound.session,
                    at=inbound.at,
                    direction="in",
                    text=text,
                    note="unmatched-result",
                )
            )

    async def _handle_call(self, inbound: FrameLogged, frame: Call) -> None:
        gateway = self.gateway
        answered = gateway.answered(self.station)
        decision = decide_call(
            answered,
            gateway.plugins,
            gateway.views,
            frame,
            inbound.text,
            station=self.station,
            session=self.id,
            protocol=self.protocol,
            at=inbound.at,
        )
        transaction_id = None
        if decision.needs_transaction_id:
            transaction_id = await gateway.allocator.allocate()
        reply = reply_text(self.protocol, frame, decision.answer, transaction_id)
        await self._answer(inbound, frame.message_id, reply, decision.note)
        if decision.note is not None:  # answered by the core: nothing to remember or do
            return
        answered.remember(frame.message_id, inbound.text, reply)
        gateway.execute(decision.later)

    def _error_text(self, error: FrameError) -> str:
        return error_text(self.protocol, error)

    async def _answer(
        self, inbound: FrameLogged, message_id: str, reply: str, note: str | None
    ) -> None:
        """Commit the inbound frame and our reply, then send the reply."""
        if note is not None:
            inbound = msgspec.structs.replace(inbound, note=note)
        outbound = self._frame("out", reply, note)
        await self._log(inbound, outbound)
        try:
            await self.ws.send_message(reply)
        except ConnectionClosed:
            # Committed but not delivered: the station retransmits and gets the same answer.
            log.info("%s left before its answer to %s was sent", self.station, message_id)

    # -- our CALLs to the station ------------------------------------------------------------

    async def _send_calls(self) -> None:
        timeout = self.gateway.settings.call_timeout
        async for call in self.outbound_receive:
            if call.done:  # the caller gave up while it was queued
                continue
            text = encode_call(call.message_id, call.action, call.payload)
            try:
                await self._log(self._frame("out", text))
            except StoreUnavailable as exc:
                call.resolve(None, exc)  # nothing was sent; the session ends with 1011
                raise
            self.in_flight = call
            try:
                await self.ws.send_message(text)
            except ConnectionClosed:
                call.resolve(None, self._gone(call))
                return
            with trio.move_on_after(timeout):
                await call._done.wait()
            self.in_flight = None
            if not call.done:
                await self._log(
                    CallTimedOut(
                        station=self.station,
                        session=self.id,
                        at=time.time(),
                        message_id=call.message_id,
                        action=call.action,
                    )
                )
                call.resolve(
                    None, CallTimeout(station=self.station, action=call.action, timeout=timeout)
                )

    def _gone(self, call: OutboundCall) -> StationOffline:
        """The error of ``call`` when the connection ended before it was answered."""
        return StationOffline(
            station=self.station, action=call.action, reason="disconnected before answering"
        )


class Gateway:
    """Accepts station connections and routes CALLs to their current session.

    The newest connection of a station wins: a new handshake closes the old session (recorded
    with ``replaced_by``) before the new one is recorded as opened.
    """

    def __init__(
        self,
        settings: Settings,
        writer: GroupCommitWriter,
        allocator: TransactionIdAllocator,
        plugins: PluginHost,
        views: Views,
        execute: Callable[[Sequence[Command]], None],
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.allocator = allocator
        self.plugins = plugins
        self.views = views
        self.execute = execute
        """Queues the commands a plugin returns besides its answer (the commit dispatcher's)."""
        self.node = settings.node
        self.sessions: dict[str, Session] = {}
        self._answered: dict[str, Answered] = {}
        self._nursery: trio.Nursery | None = None
        self.listen_port: int | None = None
        self.tls_port: int | None = None
        """The bound ``wss://`` port (``None`` without ``settings.tls``)."""
        self._password_checks = trio.CapacityLimiter(PASSWORD_CHECKS)

    # -- serving -----------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``settings.host:port`` until cancelled; ``task_status`` gets the port.

        With ``settings.tls``, ``wss://`` is served on ``tls.port`` (``tls_port`` holds the
        bound one), or instead of ``ws://`` on ``port`` when ``tls.port`` is ``None``. A peer
        whose TLS handshake fails (e.g. a client certificate not from the operator CA) is
        recorded as ``HandshakeRejected`` (cause ``tls_handshake_failed``) and dropped.
        ``OSError`` / ``ssl.SSLError`` when a certificate or key file cannot be loaded.

        On cancellation every session is closed with 1001 (going away) and recorded."""
        tls = self.settings.tls
        context = server_ssl_context(tls) if tls is not None else None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            plain = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host)
            self.listen_port = plain[0].socket.getsockname()[1]
            secure: list[trio.SSLListener[trio.SocketStream]] = []
            if context is not None and tls is not None:
                tcp = plain
                if tls.port is not None:
                    tcp = await trio.open_tcp_listeners(tls.port, host=self.settings.host)
                else:
                    plain = []  # the gateway's port speaks TLS only
                secure = [trio.SSLListener(each, context, https_compatible=True) for each in tcp]
                self.tls_port = tcp[0].socket.getsockname()[1]
            task_status.started(self.listen_port)
            if plain:
                nursery.start_soon(
                    partial(
                        trio.serve_listeners,
                        self._handle_connection,
                        plain,
                        handler_nursery=nursery,
                    )
                )
            if secure:
                nursery.start_soon(
                    partial(
                        trio.serve_listeners,
                        self._handle_tls_connection,
                        secure,
                        handler_nursery=nursery,
                    )
                )

    async def _handle_tls_connection(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        """Finish the TLS handshake (at most ``TLS_HANDSHAKE_TIMEOUT``), then serve the
        connection as ``_handle_connection`` does; a failed TLS handshake is recorded."""
        try:
            with trio.fail_after(TLS_HANDSHAKE_TIMEOUT):
                await stream.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError) as exc:
            remote = _address(_peer(stream.transport_stream))
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.transport_stream.aclose()
            if isinstance(exc, trio.BrokenResourceError):
                reason = f"TLS handshake failed: {exc.__cause__ or exc}"
                try:
                    await self._record_rejection(
                        "", "", [], remote, 0, reason, "tls_handshake_failed"
                    )
                except Exception:
                    log.exception("could not record a failed TLS handshake from %s", remote)
            return
        await self._handle_connection(stream)

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        try:
            async with trio.open_nursery() as nursery:
                request = await wrap_server_stream(
                    nursery, stream, max_message_size=self.settings.max_frame_bytes
                )
                accepted = await self._handshake(request, stream)
                if accepted is not None:
                    await self._run_session(*accepted)
                nursery.cancel_scope.cancel()
        except Exception:
            # Contained: one broken connection never takes the server down.
            log.exception("connection handler failed")
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    async def _handshake(
        self, request: WebSocketRequest, stream: trio.abc.Stream
    ) -> tuple[WebSocketConnection, str, str, list[str], Admitted, str | None] | None:
        """Accept or refuse the handshake.

        First the identity rules (``station_identity``, ``MAX_IDENTITY_LENGTH``) and the
        subprotocol policy: a refusal is answered 400 with its reason as the body. Then the
        station's security (``chargeledger.core.security.admit``: registration, profile,
        password, client certificate): a refusal is answered 401 or 403 with nothing but the
        status's name, so a prober learns nothing. Every refusal is recorded as
        ``HandshakeRejected`` with its reason (and ``cause`` for a security refusal).

        Returns the connection, station identity, protocol, the offered subprotocols, how the
        station authenticated and its client certificate's fingerprint."""
        path = request.path
        station, reason = _identity_problem(path)
        # An empty header (seen in the field) offers nothing.
        offered = [p for p in request.proposed_subprotocols if p]
        remote = _address(request.remote)
        protocol = next((p for p in SUBPROTOCOL_PREFERENCE if p in offered), None)
        if reason:
            protocol = None
        elif not offered:
            policy = self.settings.no_subprotocol
            if policy == "reject":
                reason = "no Sec-WebSocket-Protocol offered"
            else:
                protocol = policy
        elif protocol is None:
            reason = f"none of the offered subprotocols is supported: {offered}"
        if reason or protocol is None:
            await self._record_rejection(station, path, offered, remote, 400, reason)
            await request.reject(400, body=reason.encode())
            return None
        decision, fingerprint = await self._authenticate(request, stream, station)
        if isinstance(decision, Refused):
            await self._record_rejection(
                station,
                path,
                offered,
                remote,
                decision.status,
                decision.reason,
                decision.cause,
                fingerprint,
            )
            headers = [(b"WWW-Authenticate", BASIC_CHALLENGE)] if decision.status == 401 else []
            body = HTTPStatus(decision.status).phrase.encode()
            await request.reject(decision.status, extra_headers=headers, body=body)
            return None
        ws = await request.accept(subprotocol=protocol if offered else None)
        return ws, station, protocol, offered, decision, fingerprint

    async def _authenticate(
        self, request: WebSocketRequest, stream: trio.abc.Stream, station: str
    ) -> tuple[Admitted | Refused, str | None]:
        """The security decision for ``station`` on this connection and the client
        certificate's fingerprint. When a password is to be checked the decision runs off the
        trio thread, at most ``PASSWORD_CHECKS`` at a time: a check is slow and memory-hard
        on purpose."""
        peer = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        certificate = (
            stream.getpeercert(binary_form=True) if isinstance(stream, trio.SSLStream) else None
        )
        transport = transport_of(
            request.headers,
            getattr(_peer(peer), "address", None),
            certificate,
            isinstance(stream, trio.SSLStream),
            self.settings,
        )
        registration = self.views.registry.get(station)
        credentials = self.views.registry.credentials(station)
        decide = partial(
            admit,
            station,
            transport,
            registered=registration is not None,
            profile=registration.profile if registration is not None else 0,
            enabled=registration.enabled if registration is not None else True,
            credentials=credentials,
            open_registration=self.settings.registration == "open",
        )
        if transport.password is None or credentials == Credentials():
            return decide(), transport.fingerprint  # no password to check: quick
        decision = await trio.to_thread.run_sync(decide, limiter=self._password_checks)
        return decision, transport.fingerprint

    async def _record_rejection(
        self,
        station: str,
        path: str,
        offered: list[str],
        remote: str,
        status: int,
        reason: str,
        cause: str = "",
        fingerprint: str | None = None,
    ) -> None:
        """Record a refused handshake in the stream of a fresh session id."""
        session = str(uuid.uuid4())
        event = HandshakeRejected(
            station=station,
            session=session,
            at=time.time(),
            path=path,
            offered=offered,
            remote=remote,
            status=status,
            reason=reason,
            cause=cause,
            tls_fingerprint=fingerprint,
        )
        await self.writer.append([(session_stream(session), event)], new_stream=True)

    async def _run_session(
        self,
        ws: WebSocketConnection,
        station: str,
        protocol: str,
        offered: list[str],
        admitted: Admitted,
        fingerprint: str | None,
    ) -> None:
        session = Session(self, ws, station, protocol)
        old = self.sessions.get(station)
        self.sessions[station] = session
        if old is not None:
            old.end(CLOSE_POLICY, "replaced by a newer connection", replaced_by=session.id)
        await self.writer.append(
            [
                (
                    session.stream,
                    SessionOpened(
                        station=station,
                        session=session.id,
                        at=time.time(),
                        protocol=protocol,
                        offered=offered,
                        path=ws.path or "",
                        remote=_address(ws.remote),
                        node=self.node,
                        replaces=old.id if old is not None else None,
                        auth=admitted.auth,
                        profile=admitted.profile,
                        credential=admitted.credential,
                        tls_fingerprint=fingerprint,
                    ),
                )
            ],
            new_stream=True,
        )
        await session.run()

    def forget(self, session: Session) -> None:
        """Drop ``session`` from the routing table if it is still the station's current one."""
        if self.sessions.get(session.station) is session:
            del self.sessions[session.station]

    def close_session(self, station: str, code: int, reason: str) -> bool:
        """Close the station's current session with ``code`` and ``reason`` (recorded);
        whether it had one here."""
        session = self.sessions.get(station)
        if session is None:
            return False
        session.end(code, reason)
        return True

    def answered(self, station: str) -> Answered:
        """The station's retransmission window (kept across its reconnects)."""
        window = self._answered.get(station)
        if window is None:
            window = self._answered[station] = Answered()
        return window

    # -- our CALLs -----------------------------------------------------------------------------

    async def call(self, station: str, action: str, payload: Any) -> dict[str, Any]:
        """Send a CALL to ``station`` and return the payload of its CALLRESULT.

        Raises ``OutboundValidationError`` (invalid payload: nothing sent), ``StationOffline``
        (not connected here, or gone before answering), ``CallError`` (it answered with a
        CALLERROR), ``CallTimeout`` (no answer within ``call_timeout``; recorded), and
        ``StationBusy`` when the station's queue of CALLs is full (nothing sent or recorded).
        All but the first are ``OutboundCallFailed`` naming ``station`` and ``action``.
        """
        session = self.sessions.get(station)
        if session is None:
            raise StationOffline(station=station, action=action)
        wire = to_wire(session.protocol, action, msgspec.to_builtins(payload), "request")
        outbound = OutboundCall(action, wire)
        try:
            session.outbound_send.send_nowait(outbound)
        except trio.WouldBlock:
            limit = self.settings.outbound_queue
            raise StationBusy(station=station, action=action, limit=limit) from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise StationOffline(station=station, action=action, reason="disconnected") from None
        try:
            return await outbound.wait()
        finally:
            # Cancelled while queued: mark it done so the session skips it.
            outbound.resolve(
                None, StationOffline(station=station, action=action, reason="the caller gave up")
            )
