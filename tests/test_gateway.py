"""The gateway's defined behaviour for every kind of misbehaving peer, over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import quote

import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st

from chargeledger.core.errors import CallTimeout, StoreUnavailable
from chargeledger.core.events import CallTimedOut, FrameLogged, HandshakeRejected, SessionClosed
from chargeledger.core.gateway import station_identity
from chargeledger.core.settings import Settings
from tests.conftest import on_sqlite_and_postgres
from tests.harness import RunningServer, raw_station, running_server
from tests.polling import wait_for

BOOT = '[2,"boot","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'


def events(server: RunningServer) -> list[Any]:
    assert server.csms is not None
    return [r.event for r in server.csms.store.iter_all()]


def closed(server: RunningServer) -> list[SessionClosed]:
    """The recorded ``SessionClosed`` events, in log order."""
    return [e for e in events(server) if isinstance(e, SessionClosed)]


@pytest.fixture
def store(server_store: str) -> str:
    """SQLite; PostgreSQL too where a test is marked ``@on_sqlite_and_postgres``."""
    return server_store


@given(st.text(min_size=1).filter(lambda s: s.strip("/") == s and "/" not in s))
def test_station_identity_is_the_last_segment_percent_decoded(name: str) -> None:
    assert station_identity(f"/ocpp/v16/{quote(name, safe='')}") == name
    assert station_identity(f"/{quote(name, safe='')}/?token=1") == name


def test_station_identity_empty_path() -> None:
    assert station_identity("/") == ""
    assert station_identity("") == ""


async def _booted(server: RunningServer, name: str, protocols: list[str] | None = None) -> Any:
    ws = await raw_station(server.url, name, ["ocpp1.6"] if protocols is None else protocols)
    await ws.send(BOOT)
    assert json.loads(await ws.recv())[2]["status"] == "Accepted"
    return ws


def test_no_subprotocol_is_served_as_16_by_default(store: str) -> None:
    async def scenario(server: RunningServer) -> None:
        ws = await _booted(server, "NOPROTO", protocols=[])
        assert ws.subprotocol is None
        await ws.close()

    with running_server(Settings(port=0, store=store)) as server:
        asyncio.run(scenario(server))
        opened = [e for e in events(server) if type(e).__name__ == "SessionOpened"]
    assert opened[0].protocol == "ocpp1.6" and opened[0].offered == []


@pytest.mark.parametrize(
    ("policy", "offered", "path"),
    [
        ("reject", [], "/ocpp/CP-X"),
        ("ocpp1.6", ["ocpp1.5"], "/ocpp/CP-X"),
        ("ocpp1.6", ["ocpp1.6"], "/"),
    ],
)
@on_sqlite_and_postgres
def test_refused_handshakes_are_recorded(
    store: str, policy: Any, offered: list[str], path: str
) -> None:
    async def scenario(server: RunningServer) -> int:
        assert server.csms is not None
        url = f"ws://127.0.0.1:{server.csms.port}{path}"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                url, subprotocols=[websockets.Subprotocol(p) for p in offered] or None
            )
        return refused.value.response.status_code

    with running_server(Settings(port=0, store=store, no_subprotocol=policy)) as server:
        assert asyncio.run(scenario(server)) == 400
        (rejected,) = [e for e in events(server) if isinstance(e, HandshakeRejected)]
    assert rejected.offered == offered and rejected.reason


@on_sqlite_and_postgres
def test_oversized_frame_closes_1009_and_is_recorded(store: str) -> None:
    async def scenario(server: RunningServer) -> int | None:
        ws = await _booted(server, "BIG")
        await ws.send('[2,"x","DataTransfer",{"vendorId":"v","data":"' + "a" * 5000 + '"}]')
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        return closed.value.rcvd.code if closed.value.rcvd else None

    with running_server(Settings(port=0, store=store, max_frame_bytes=1024)) as server:
        assert asyncio.run(scenario(server)) == 1009
        closes = wait_for(lambda: closed(server), what="the recorded SessionClosed")
    assert [(c.code, c.by) for c in closes] == [(1009, "csms")]


@on_sqlite_and_postgres
def test_binary_frame_is_recorded_and_closes_1003(store: str) -> None:
    async def scenario(server: RunningServer) -> int | None:
        ws = await _booted(server, "BIN")
        await ws.send(b"\x00\x01binary")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        return closed.value.rcvd.code if closed.value.rcvd else None

    with running_server(Settings(port=0, store=store)) as server:
        assert asyncio.run(scenario(server)) == 1003
        wait_for(lambda: closed(server), what="the recorded SessionClosed")
        log = events(server)
    binary = [e for e in log if isinstance(e, FrameLogged) and e.binary]
    assert binary and binary[0].note == "binary"
    assert [e.code for e in log if isinstance(e, SessionClosed)] == [1003]


@on_sqlite_and_postgres
def test_newest_connection_wins(store: str) -> None:
    async def scenario(server: RunningServer) -> None:
        first = await _booted(server, "TWICE")
        second = await raw_station(server.url, "TWICE", ["ocpp1.6"])
        with pytest.raises(websockets.ConnectionClosed):
            await first.recv()
        await second.send('[2,"h","Heartbeat",{}]')
        assert json.loads(await second.recv())[0] == 3
        await second.close()

    with running_server(Settings(port=0, store=store)) as server:
        asyncio.run(scenario(server))
        wait_for(lambda: len(closed(server)) == 2, what="both sessions' SessionClosed")
        log = events(server)
    opened = [e for e in log if type(e).__name__ == "SessionOpened"]
    closes = [e for e in log if isinstance(e, SessionClosed)]
    assert opened[1].replaces == opened[0].session
    assert closes[0].session == opened[0].session and closes[0].replaced_by == opened[1].session


def test_dead_peer_is_detected(store: str) -> None:
    settings = Settings(port=0, store=store, ping_interval=0.2, ping_timeout=0.3)
    with running_server(settings) as server:
        assert server.csms is not None
        # A raw handshake and then silence: no pong will ever come.
        sock = socket.create_connection(("127.0.0.1", server.csms.port))
        sock.sendall(
            b"GET /ocpp/SILENT HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        )
        assert b"101" in sock.recv(4096)
        closes = wait_for(lambda: closed(server), what="the dead peer's SessionClosed")
        sock.close()
    assert "dead peer" in closes[0].reason


@on_sqlite_and_postgres
def test_timeout_is_recorded_and_a_late_answer_ignored(store: str) -> None:
    async def scenario(server: RunningServer) -> Exception | None:
        ws = await _booted(server, "SLOW")
        assert server.csms is not None
        csms = server.csms
        request = asyncio.create_task(server.arun(csms.reset, "SLOW", "soft"))
        frame = json.loads(await ws.recv())  # the Reset CALL; we do not answer in time
        try:
            await request
        except CallTimeout as exc:
            error: Exception | None = exc
        else:
            error = None
        await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))  # too late
        await ws.send('[2,"h","Heartbeat",{}]')
        assert json.loads(await ws.recv())[1] == "h"
        await ws.close()
        return error

    with running_server(Settings(port=0, store=store, call_timeout=0.3)) as server:
        assert isinstance(asyncio.run(scenario(server)), CallTimeout)
        log = events(server)
    assert any(isinstance(e, CallTimedOut) and e.action == "Reset" for e in log)
    assert any(isinstance(e, FrameLogged) and e.note == "unmatched-result" for e in log)


@on_sqlite_and_postgres
def test_reused_message_id_with_other_payload_is_a_protocol_error(store: str) -> None:
    async def scenario(server: RunningServer) -> list[Any]:
        ws = await _booted(server, "REUSE")
        await ws.send('[2,"a","Authorize",{"idTag":"T1"}]')
        first = json.loads(await ws.recv())
        await ws.send('[2, "a", "Authorize", {"idTag": "T1"}]')  # same call, other spacing
        again = json.loads(await ws.recv())
        await ws.send('[2,"a","Authorize",{"idTag":"OTHER"}]')
        other = json.loads(await ws.recv())
        await ws.close()
        return [first, again, other]

    with running_server(Settings(port=0, store=store)) as server:
        first, again, other = asyncio.run(scenario(server))
    assert again == first
    assert other[:3] == [4, "a", "ProtocolError"]


def test_garbage_connection_does_not_take_the_server_down(store: str) -> None:
    async def scenario(server: RunningServer) -> None:
        ws = await _booted(server, "AFTER")
        await ws.close()

    with running_server(Settings(port=0, store=store)) as server:
        assert server.csms is not None
        address = ("127.0.0.1", server.csms.port)
        for garbage in (b"\x16\x03\x01 not http\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(garbage)
                answer = b""
                while chunk := sock.recv(1024):  # answered, then closed by the server
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 400 "), (garbage, answer)
        socket.create_connection(address).close()  # a peer that says nothing and leaves
        asyncio.run(scenario(server))


@on_sqlite_and_postgres
def test_store_failure_closes_the_session_without_answering(store: str) -> None:
    async def scenario(server: RunningServer) -> tuple[tuple[int, str] | None, list[Any]]:
        ws = await _booted(server, "FAIL")
        assert server.csms is not None
        real_append = server.csms.store.append

        def failing(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("disk on fire")

        server.csms.store.append = failing  # type: ignore[method-assign]
        received = []
        try:
            await ws.send('[2,"h","Heartbeat",{}]')
            try:
                while True:
                    received.append(await ws.recv())
            except websockets.ConnectionClosed as closed:
                close = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else None
        finally:
            server.csms.store.append = real_append  # type: ignore[method-assign]
        return close, received

    with running_server(Settings(port=0, store=store)) as server:
        close, received = asyncio.run(scenario(server))
    assert close == (1011, "event store unavailable")
    assert received == [], "nothing unrecorded may be acknowledged"
