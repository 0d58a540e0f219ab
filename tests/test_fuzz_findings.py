"""Regression tests for what the fuzz targets of tests/fuzz/ found (see docs/testing.md)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from chargeledger.core.settings import Settings
from tests.harness import running_server

UPGRADE = (
    b"GET /ocpp/CP1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)


def _first_bytes(sock: socket.socket) -> bytes | None:
    """The server's first bytes on ``sock``: b"" when it closed (EOF or reset) without an
    answer, None when it did neither before the socket's timeout."""
    try:
        return sock.recv(4096)
    except ConnectionResetError:
        return b""
    except TimeoutError:
        return None


@pytest.mark.parametrize("half_close", [True, False], ids=["then-eof", "then-silence"])
def test_half_an_upgrade_request_is_closed_at_the_handshake_deadline(
    half_close: bool, tmp_path: Path
) -> None:
    # Found while writing fuzz_handshake: trio-websocket waits for the rest of the request
    # forever, even after EOF, so each such peer held a handler task and a socket until the
    # server stopped. Now a silent peer is closed at the deadline, and one that left (EOF)
    # at once, long before it (tests/test_limits.py does this by the thousand).
    deadline = 30.0 if half_close else 0.5
    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'hs.db'}", handshake_timeout=deadline)
    with running_server(settings) as server:
        assert server.csms is not None
        address = ("127.0.0.1", server.csms.port)
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(UPGRADE[:30])
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            started = time.monotonic()
            assert _first_bytes(sock) == b"", "the server kept a half-sent handshake open"
            if not half_close:
                assert time.monotonic() - started >= 0.4, "closed before the deadline"
        # The deadline covers only the request: a whole one is still answered.
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(UPGRADE)
            assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")


def test_a_non_ascii_host_closes_only_that_connection(tmp_path: Path) -> None:
    # Found by fuzz_handshake: wsproto decodes Host as IDNA and lets UnicodeDecodeError
    # escape (a library bug, not a RemoteProtocolError). The gateway's handler contains it:
    # that connection is closed (without an answer; a 400 would do as well), and the next
    # station is served as usual.
    with running_server(Settings(port=0, store=f"sqlite:///{tmp_path / 'hs.db'}")) as server:
        assert server.csms is not None
        address = ("127.0.0.1", server.csms.port)
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(UPGRADE.replace(b"Host: localhost", b"Host: \xff\xfe"))
            answer = _first_bytes(sock)
            assert answer is not None, "the connection stayed open"
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(UPGRADE)
            assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
