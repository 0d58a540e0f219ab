"""A lean RFC 6455 WebSocket client over trio streams: the simulator's transport.

Why not trio-websocket: its client spends about 140 µs of CPU per CALL + CALLRESULT (a reader
task per connection, wsproto events, a channel hop), this one about 50 µs on the same machine,
and a load generator must cost far less than the server it measures. It speaks exactly what
an OCPP-J station needs: one subprotocol, text messages (fragmented ones too), pings answered
with pongs, the close handshake. No extensions (OCPP-J stations rarely offer
permessage-deflate), and TLS (``wss://``, security profiles 2 and 3) through
:class:`trio.SSLStream` when given an :class:`ssl.SSLContext`.

What goes wrong, and how it shows:

* A TLS handshake that fails (a server certificate the CA does not vouch for, a name that
  does not match, a client certificate the server rejects: with TLS 1.3 the server's alert
  arrives only when the upgrade's answer is read) raises :class:`HandshakeFailed` naming TLS.

* A handshake the server refuses (status other than 101, a wrong ``Sec-WebSocket-Accept``, a
  subprotocol other than the one offered) raises :class:`HandshakeFailed`.
* A close frame from the server is answered and raises :class:`ConnectionClosed` carrying its
  code and reason; a TCP connection that ends without one raises it with code 1006.
* A binary message, a message over ``max_message_bytes`` or a malformed frame closes the
  connection (1003 / 1009 / 1002) and raises :class:`ConnectionClosed`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import ssl
import struct
from collections.abc import Awaitable, Sequence
from typing import TypeVar
from urllib.parse import quote

import trio

__all__ = ["ConnectionClosed", "HandshakeFailed", "WebSocketClient", "connect"]

T = TypeVar("T")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_RESPONSE_HEAD = 16384
_RECEIVE_SIZE = 65536

_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
"""What a trio stream raises once the connection is gone."""

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_ABNORMAL = 1006
CLOSE_TOO_BIG = 1009


class HandshakeFailed(Exception):
    """The server did not accept the WebSocket upgrade as offered."""


class ConnectionClosed(Exception):
    """The connection is closed; ``by`` says who closed it (``"server"`` or ``"client"``)."""

    def __init__(self, code: int, reason: str, by: str) -> None:
        super().__init__(f"closed by {by}: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.by = by


def _mask(data: bytes, key: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``key``, done as one big-integer XOR (fast in C)."""
    length = len(data)
    if not length:
        return data
    keystream = (key * (length // 4 + 1))[:length]
    masked = int.from_bytes(data, "little") ^ int.from_bytes(keystream, "little")
    return masked.to_bytes(length, "little")


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame, masked with a fresh random key as RFC 6455 requires."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0xFE, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0xFF, length)
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class WebSocketClient:
    """One open client connection. Not safe for concurrent senders: a simulated station is
    one task, which is all OCPP-J needs (one CALL in flight per direction)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        tcp: trio.SocketStream,
        buffered: bytes,
        max_message_bytes: int,
    ) -> None:
        self._stream = stream
        self._tcp = tcp
        self._buffer = bytearray(buffered)
        self._max_message_bytes = max_message_bytes
        self.closed: ConnectionClosed | None = None

    async def send_text(self, text: bytes) -> None:
        """Send ``text`` (UTF-8 bytes) as one text message. Raises :class:`ConnectionClosed`."""
        await self._send_frame(_TEXT, text)

    async def receive_text(self) -> bytes:
        """The next text message (UTF-8 bytes), answering pings on the way.

        Raises :class:`ConnectionClosed` when the server closes, the connection breaks, or the
        server breaks the protocol (then we close it first)."""
        fragments: list[bytes] = []
        size = 0
        while True:
            opcode, final, payload = await self._receive_frame()
            if opcode == _TEXT or (opcode == _CONTINUATION and fragments):
                fragments.append(payload)
                size += len(payload)
                if size > self._max_message_bytes:
                    await self._fail(CLOSE_TOO_BIG, "message too big")
                if final:
                    return fragments[0] if len(fragments) == 1 else b"".join(fragments)
            elif opcode == _PING:
                await self._send_frame(_PONG, payload)
            elif opcode == _PONG:
                continue
            elif opcode == _CLOSE:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", "replace")
                await self._close_stream(code, reason, "server", reply=payload[:2])
            elif opcode == _BINARY:
                await self._fail(CLOSE_UNSUPPORTED_DATA, "OCPP-J uses text frames only")
            else:
                await self._fail(CLOSE_PROTOCOL_ERROR, f"unexpected opcode {opcode}")

    async def aclose(self, code: int = CLOSE_NORMAL, reason: str = "", wait: float = 1.0) -> None:
        """Close: send a close frame, wait up to ``wait`` s for the server's, drop the TCP
        connection. Never raises; closing twice does nothing."""
        if self.closed is not None:
            return
        try:
            await self._send_frame(_CLOSE, struct.pack("!H", code) + reason.encode())
            with trio.move_on_after(wait):
                while True:
                    opcode, _, _ = await self._receive_frame()
                    if opcode == _CLOSE:
                        break
        except (ConnectionClosed, *_BROKEN):
            pass
        self.closed = ConnectionClosed(code, reason, "client")
        await trio.aclose_forcefully(self._stream)

    def abort(self, reason: str) -> None:
        """Drop the TCP connection at once, from any task: a task waiting on it gets
        :class:`ConnectionClosed` (``by="client"``, code 1006, ``reason``)."""
        if self.closed is None:
            self.closed = ConnectionClosed(CLOSE_ABNORMAL, reason, "client")
            self._tcp.socket.close()

    async def _fail(self, code: int, reason: str) -> None:
        await self.aclose(code, reason, wait=0)
        assert self.closed is not None
        raise self.closed

    async def _close_stream(
        self, code: int, reason: str, by: str, reply: bytes | None = None
    ) -> None:
        """Send ``reply`` as our close frame if given, drop TCP, raise ConnectionClosed."""
        if self.closed is None:
            self.closed = ConnectionClosed(code, reason, by)
            if reply is not None:
                with contextlib.suppress(*_BROKEN):
                    await self._stream.send_all(_client_frame(_CLOSE, reply))
            await trio.aclose_forcefully(self._stream)
        raise self.closed

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.closed is not None:
            raise self.closed
        try:
            await self._stream.send_all(_client_frame(opcode, payload))
        except _BROKEN as exc:
            await self._close_stream(CLOSE_ABNORMAL, f"send failed: {exc}", "server")

    async def _receive_frame(self) -> tuple[int, bool, bytes]:
        buffer = self._buffer
        while True:
            if len(buffer) >= 2:
                length = buffer[1] & 0x7F
                start = 2
                if length == 126:
                    length, start = (-1, 4) if len(buffer) < 4 else (buffer[2] << 8 | buffer[3], 4)
                elif length == 127:
                    if len(buffer) < 10:
                        length = -1
                    else:
                        length, start = struct.unpack_from("!Q", buffer, 2)[0], 10
                masked = buffer[1] & 0x80
                if masked:
                    start += 4
                if length > self._max_message_bytes:
                    await self._fail(CLOSE_TOO_BIG, "message too big")
                if length >= 0 and len(buffer) >= start + length:
                    first = buffer[0]
                    payload = bytes(buffer[start : start + length])
                    if masked:  # servers must not mask; tolerate it rather than fail
                        payload = _mask(payload, bytes(buffer[start - 4 : start]))
                    del buffer[: start + length]
                    return first & 0x0F, bool(first & 0x80), payload
            if self.closed is not None:
                raise self.closed
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except _BROKEN as exc:
                data = b""
                reason = f"receive failed: {exc}"
            else:
                reason = "connection dropped without a close frame"
            if not data:
                await self._close_stream(CLOSE_ABNORMAL, reason, "server")
            buffer += data


def _accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


async def connect(
    address: str,
    port: int,
    path: str,
    subprotocol: str,
    *,
    host: str | None = None,
    max_message_bytes: int = 65536,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> WebSocketClient:
    """Open ``ws://address:port/path`` (``wss://`` with ``ssl_context``) offering
    ``subprotocol``; ``host`` (default: ``address``) goes into the Host header and is the
    name the server's certificate must carry unless ``server_hostname`` names another.
    ``headers`` are sent as they are (``Authorization`` for HTTP Basic).

    ``path`` is sent percent-encoded as needed. Raises ``OSError`` when the TCP connection
    fails and :class:`HandshakeFailed` when the TLS handshake fails or the upgrade is refused
    or answered wrongly; the caller bounds the time (``trio.fail_after``)."""
    host = address if host is None else host
    tcp = await trio.open_tcp_stream(address, port)
    stream: trio.abc.Stream = tcp
    try:
        if ssl_context is not None:
            name = server_hostname or host.strip("[]")
            stream = trio.SSLStream(tcp, ssl_context, server_hostname=name, https_compatible=True)
            await _tls(stream.do_handshake())
        key = base64.b64encode(os.urandom(16))
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        request = (
            f"GET {quote(path, safe='/%:@!$&()*+,;=')} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {subprotocol}\r\n{extra}\r\n"
        ).encode()
        await _tls(stream.send_all(request))
        response = b""
        while b"\r\n\r\n" not in response:
            if len(response) > _MAX_RESPONSE_HEAD:
                raise HandshakeFailed("handshake response too long")
            data = await _tls(stream.receive_some(_RECEIVE_SIZE))
            if not data:
                raise HandshakeFailed("connection closed during the handshake")
            response += data
        head, _, rest = response.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            raise HandshakeFailed(f"HTTP {' '.join(parts[1:]).strip() or repr(status_line)}")
        answer = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        if answer.get("sec-websocket-accept", "").encode() != _accept_key(key):
            raise HandshakeFailed("wrong Sec-WebSocket-Accept")
        chosen = answer.get("sec-websocket-protocol", "")
        if chosen != subprotocol:
            raise HandshakeFailed(f"subprotocol {subprotocol} not accepted (got {chosen!r})")
        return WebSocketClient(stream, tcp, rest, max_message_bytes)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _tls(step: Awaitable[T]) -> T:
    """Await ``step``; a TLS failure (trio wraps ``ssl.SSLError`` in BrokenResourceError)
    becomes :class:`HandshakeFailed` with OpenSSL's reason. Plain streams raise no
    ``SSLError``, so their broken connections stay ``OSError`` / BrokenResourceError."""
    try:
        return await step
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            raise HandshakeFailed(f"TLS: {cause.reason or cause}") from exc
        raise
