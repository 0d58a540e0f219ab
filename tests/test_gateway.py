"""The gateway's defined behaviour for every kind of misbehaving peer, over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any
from urllib.parse import quote

import pytest
import trio
import trio.testing
import websockets
from hypothesis import given
from hypothesis import strategies as st

from chargeledger.core.errors import CallTimeout, StoreUnavailable
from chargeledger.core.events import CallTimedOut, FrameLogged, HandshakeRejected, SessionClosed
from chargeledger.core.gateway import _SPENT_HANDSHAKE, Keepalive, station_identity
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


def _tasks(server: RunningServer) -> int:
    """How many trio tasks the server runs now."""

    async def count() -> int:
        def walk(task: trio.lowlevel.Task) -> int:
            return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

        return walk(trio.lowlevel.current_root_task())

    return server.run(count)


def test_an_idle_connection_costs_two_tasks_and_no_call_queue(store: str) -> None:
    """An idle session runs its reader (the connection's handler) and trio-websocket's
    reader, nothing more: its pings are timed by the gateway's one keepalive task, its CALL
    queue and sender are made by the first CALL to it (docs/performance.md)."""

    async def scenario(server: RunningServer) -> None:
        assert server.csms is not None
        gateway = server.csms.gateway
        before = _tasks(server)
        stations = [await _booted(server, f"IDLE-{i}") for i in range(4)]
        # Between the boots and the counts the writer's tasks may still be settling.
        wait_for(lambda: _tasks(server) - before == 2 * 4, what="two tasks per idle station")
        assert all(s.outbound_send is None for s in gateway.sessions.values())
        # Their wsproto sides dropped the spent opening handshake (its h11 connection).
        spent = [s.ws._wsproto.handshake is _SPENT_HANDSHAKE for s in gateway.sessions.values()]
        assert spent == [True] * 4
        request = asyncio.create_task(server.arun(server.csms.reset, "IDLE-0", "soft"))
        frame = json.loads(await stations[0].recv())
        await stations[0].send(json.dumps([3, frame[1], {"status": "Accepted"}]))
        await request
        session = gateway.sessions["IDLE-0"]
        assert session.outbound_send is not None and session.queued == 0
        assert all(gateway.sessions[f"IDLE-{i}"].outbound_send is None for i in range(1, 4))
        # The first CALL started the station's sender, which waits for the next one.
        wait_for(lambda: _tasks(server) - before == 2 * 4 + 1, what="the sender of IDLE-0")
        for ws in stations:
            await ws.close()

    with running_server(Settings(port=0, store=store)) as server:
        asyncio.run(scenario(server))


def _answer_pings(sock: socket.socket, pings: int, timeout: float) -> int:
    """Read the server's frames on a raw WebSocket, answering each ping with its pong, until
    ``pings`` were answered or ``timeout`` seconds passed; how many were answered."""
    answered, buffer = 0, b""
    sock.settimeout(0.1)
    deadline = time.monotonic() + timeout
    while answered < pings and time.monotonic() < deadline:
        try:
            buffer += sock.recv(4096)
        except TimeoutError:
            continue
        while len(buffer) >= 2 and len(buffer) >= 2 + (buffer[1] & 0x7F):
            opcode, size = buffer[0] & 0x0F, buffer[1] & 0x7F
            payload, buffer = buffer[2 : 2 + size], buffer[2 + size :]
            if opcode == 0x9:  # a ping: its pong, masked (with a zero mask) as a client's
                sock.sendall(bytes([0x8A, 0x80 | size]) + b"\0\0\0\0" + payload)
                answered += 1
    return answered


def test_keepalive_pings_every_session_and_closes_only_the_silent_one(store: str) -> None:
    """The gateway's one keepalive timer pings each session ``ping_interval`` after its last
    pong: a station that answers stays, again and again; one that is silent is closed."""
    settings = Settings(port=0, store=store, ping_interval=0.2, ping_timeout=0.5)

    def upgraded(name: str, port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            f"GET /ocpp/{name} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(1)
        assert b" 101 " in response
        return sock

    with running_server(settings) as server:
        assert server.csms is not None
        alive = upgraded("ALIVE", server.csms.port)
        silent = upgraded("SILENT", server.csms.port)
        assert _answer_pings(alive, 5, timeout=10) == 5  # 5 intervals, 2 pong timeouts
        closes = wait_for(lambda: closed(server), what="the silent peer's SessionClosed")
        assert [(c.station, c.code, c.reason) for c in closes] == [
            ("SILENT", 1001, "no pong: dead peer")
        ]
        assert "ALIVE" in server.csms.gateway.sessions
        alive.close()
        silent.close()


class _Due:
    """A session as the keepalive timer sees it: ``closed``, and ``ping`` noting the time."""

    def __init__(self, name: str, pinged: list[tuple[str, float]], closed: bool = False) -> None:
        self.name, self.pinged, self.closed = name, pinged, closed

    def ping(self) -> None:
        self.pinged.append((self.name, trio.current_time()))


def test_the_keepalive_timer_pings_when_due_in_deadline_order() -> None:
    """Each session is pinged ``interval`` after it was scheduled, whatever the order of the
    scheduling (an earlier deadline wakes the timer); ended sessions are dropped from the
    heap once it holds more than twice the sessions last counted; interval 0 pings nobody."""

    async def main() -> None:
        pinged: list[tuple[str, float]] = []
        keepalive = Keepalive(10.0)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keepalive.run)
            await trio.sleep(1)  # the timer waits on an empty heap
            keepalive.schedule(_Due("a", pinged))  # type: ignore[arg-type]
            await trio.sleep(2)
            keepalive.schedule(_Due("b", pinged))  # type: ignore[arg-type]
            keepalive.interval = 1.0  # a deadline earlier than the one the timer waits for
            keepalive.schedule(_Due("c", pinged))  # type: ignore[arg-type]
            await trio.sleep(30)
            assert [(name, at - start) for name, at in pinged] == [
                ("c", 4.0),
                ("a", 11.0),
                ("b", 13.0),
            ]
            assert len(keepalive) == 0
            keepalive.interval = 100.0
            for i in range(1024):
                keepalive.schedule(_Due(f"ended-{i}", pinged, closed=True))  # type: ignore[arg-type]
            assert len(keepalive) == 1024
            keepalive.schedule(_Due("live", pinged))  # type: ignore[arg-type]
            assert len(keepalive) == 1  # the ended ones cleared
            nursery.cancel_scope.cancel()
        off = Keepalive(0)
        off.schedule(_Due("never", pinged))  # type: ignore[arg-type]
        assert len(off) == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
