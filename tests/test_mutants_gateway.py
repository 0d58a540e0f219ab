"""Tests that kill the mutants of core/gateway.py the rest of the suite let survive
(``make mutation``; the list and the mutants left alive, with the reason, are in
docs/testing.md). The server runs in the test's own trio run; the station is a bare socket
speaking WebSocket through wsproto (``tests/test_ordering.py``), so close codes, refusals
and their timing are read off the socket."""

from __future__ import annotations

import dataclasses
import json
import resource
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from chargeledger.core.api import CentralSystem
from chargeledger.core.errors import CallError, CallTooLarge, StationBusy, StationOffline
from chargeledger.core.events import (
    Event,
    FrameLogged,
    HandshakeRejected,
    SessionClosed,
    SessionOpened,
)
from chargeledger.core.frames import encode_call
from chargeledger.core.gateway import (
    Gateway,
    GatewayStatistics,
    RateLimit,
    connection_limit,
)
from chargeledger.core.server import run_server
from chargeledger.core.settings import Settings, TlsSettings
from chargeledger.core.store import open_store
from tests.polling import eventually
from tests.test_ordering import BOOT, HEARTBEAT, STEP, RawStation, booted, frame, gate, recorded

__all__: list[str] = []

START = (
    '[2,"st","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,'
    '"timestamp":"2026-01-01T00:00:00Z"}]'
)


# -- pure parts: the descriptor budget, the token bucket, the statistics ---------------------


def test_max_connections_when_set_is_taken_as_it_is() -> None:
    assert connection_limit(Settings(max_connections=1)) == 1
    assert connection_limit(Settings(max_connections=7)) == 7


@pytest.mark.parametrize(
    ("soft", "expected"),
    [
        (10_000, 10_000 - 256),  # 256 descriptors kept for the store, the API, the logs
        (resource.RLIM_INFINITY, (1 << 20) - 256),  # unlimited: counted as 2**20
        (300, 44),
        (100, 1),  # never below one connection
        (257, 1),
    ],
)
def test_max_connections_0_is_the_open_file_limit_less_256(
    monkeypatch: pytest.MonkeyPatch, soft: int, expected: int
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, resource.RLIM_INFINITY))
    assert connection_limit(Settings(max_connections=0)) == expected


def _clocked(body: Callable[[trio.testing.MockClock], Any]) -> None:
    """Run ``body(clock)`` in a trio run on a clock that moves only when told (from 100 s)."""
    clock = trio.testing.MockClock()

    async def main() -> None:
        clock.jump(100)
        await body(clock)

    trio.run(main, clock=clock)


def test_a_rate_of_0_allows_everything() -> None:
    async def body(clock: trio.testing.MockClock) -> None:
        unlimited = RateLimit(0)
        assert all(unlimited.allow() for _ in range(1_000))

    _clocked(body)


def test_a_burst_is_the_rate_and_tokens_come_back_at_the_rate() -> None:
    async def body(clock: trio.testing.MockClock) -> None:
        bucket = RateLimit(4)
        assert [bucket.allow() for _ in range(5)] == [True] * 4 + [False]
        clock.jump(0.25)  # one token back
        assert [bucket.allow() for _ in range(2)] == [True, False]
        clock.jump(10)  # never more than the burst
        assert [bucket.allow() for _ in range(5)] == [True] * 4 + [False]
        one = RateLimit(1)
        assert [one.allow(), one.allow()] == [True, False]

    _clocked(body)


def test_a_rate_below_one_still_allows_a_burst_of_one() -> None:
    async def body(clock: trio.testing.MockClock) -> None:
        slow = RateLimit(0.5)
        assert [slow.allow(), slow.allow()] == [True, False]
        clock.jump(2)  # half a token a second
        assert [slow.allow(), slow.allow()] == [True, False]
        clock.jump(100)  # the burst is one, however long the wait
        assert [slow.allow(), slow.allow()] == [True, False]

    _clocked(body)


def test_statistics_are_a_frozen_snapshot() -> None:
    snapshot = GatewayStatistics(
        connections=0,
        handshakes=0,
        limits={},
        refused={},
        handshakes_timed_out=0,
        handshakes_abandoned=0,
        floods={},
        retransmission_bytes=0,
        retransmission_stations=0,
        retransmission_calls=0,
        retransmission_dropped=0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.connections = 1  # type: ignore[misc]


def test_serve_takes_task_status_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        Gateway.serve(None, trio.TASK_STATUS_IGNORED)  # type: ignore[arg-type,misc]


# -- a server in this trio run ---------------------------------------------------------------


class Served:
    """A running server, its store URL, and a scope that stops it (as SIGINT does)."""

    def __init__(self, csms: CentralSystem, url: str, scope: trio.CancelScope) -> None:
        self.csms = csms
        self.url = url
        self.scope = scope

    @property
    def port(self) -> int:
        return self.csms.port


@asynccontextmanager
async def served(tmp_path: Path, name: str = "gw", **settings: Any) -> AsyncIterator[Served]:
    """A server with ``settings`` (no pings unless set: every byte on a socket is a frame)."""
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    scope = trio.CancelScope()

    async def serve(*, task_status: trio.TaskStatus[CentralSystem]) -> None:
        with scope:
            await run_server(
                Settings(**{"port": 0, "store": url, "ping_interval": 0, **settings}),
                task_status=task_status,
            )

    async with trio.open_nursery() as nursery:
        csms: CentralSystem = await nursery.start(serve)
        yield Served(csms, url, scope)
        scope.cancel()


async def closes(csms: CentralSystem, station: str) -> list[SessionClosed]:
    events = await recorded(csms)
    return [e for e in events if isinstance(e, SessionClosed) and e.station == station]


async def close_recorded(csms: CentralSystem, station: str) -> SessionClosed:
    (record,) = await eventually(
        lambda: closes(csms, station), what=f"the recorded SessionClosed of {station}"
    )
    return record


async def next_close(station: RawStation) -> CloseConnection:
    """The server's close frame (not answered: the caller decides)."""
    event = await station._next_event()
    assert isinstance(event, CloseConnection), f"got {event!r} instead of a close"
    return event


async def leave(station: RawStation, reason: str = "bye") -> None:
    """The station closes (1000, ``reason``) and reads the server's answering close."""
    await station._send(CloseConnection(code=1000, reason=reason))
    answer = await next_close(station)
    assert answer.code == 1000


async def handshake_answer(
    port: int, target: str = "/ocpp/CP1", stream: trio.abc.Stream | None = None
) -> tuple[int, dict[str, str]]:
    """Open ``target`` with a whole upgrade request (on ``stream`` when given, a new
    connection to ``port`` otherwise): the HTTP status (101 when accepted, 0 when the
    connection was closed without an answer) and the response's headers."""
    if stream is None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    status, headers = 0, {}
    async with stream:
        await stream.send_all(
            ws.send(Request(host="127.0.0.1", target=target, subprotocols=["ocpp1.6"]))
        )
        with trio.fail_after(STEP):
            while True:
                try:
                    data = await stream.receive_some()
                except trio.BrokenResourceError:  # reset: no answer
                    return 0, {}
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        return 101, {}
                    if isinstance(event, RejectConnection):
                        status = event.status_code
                        headers = {k.decode(): v.decode() for k, v in event.headers}
                        if not event.has_body:
                            return status, headers
                    if isinstance(event, RejectData) and event.body_finished:
                        return status, headers
                if not data:
                    return status, headers


def rejections(events: Sequence[Event]) -> list[HandshakeRejected]:
    return [e for e in events if isinstance(e, HandshakeRejected)]


# -- close codes and reasons, as the station sees them and as recorded -------------------------


async def test_shutdown_closes_sessions_1001_and_records_it(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        station = await booted(server.csms, "BYE")
        server.scope.cancel()  # the server stops: its sessions are closed, not dropped
        close = await next_close(station)
        await station._send(close.response())
        assert (close.code, close.reason) == (1001, "server shutting down")
    store = open_store(server.url)
    try:
        [record] = [r.event for r in store.iter_all() if isinstance(r.event, SessionClosed)]
    finally:
        store.close()
    assert (record.code, record.reason, record.by) == (1001, "server shutting down", "csms")


async def test_the_station_s_own_close_code_and_reason_are_recorded(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        station = await booted(server.csms, "LEAVER")
        await leave(station, "going home")
        record = await close_recorded(server.csms, "LEAVER")
    assert (record.code, record.reason, record.by) == (1000, "going home", "station")


async def test_a_closed_session_waits_1_s_for_the_station_s_close_then_records_it(
    tmp_path: Path,
) -> None:
    """``close_session``: the station gets the code and reason; one that never answers the
    close is given ``CLOSE_HANDSHAKE_TIMEOUT`` (1 s), then the close is recorded."""
    async with served(tmp_path) as server:
        station = await booted(server.csms, "SHY")
        assert server.csms.close_session("NOBODY", 1000, "x") is False
        assert server.csms.close_session("SHY", 4000, "maintenance") is True
        close = await next_close(station)  # and never answered
        told = time.monotonic()
        assert (close.code, close.reason) == (4000, "maintenance")
        record = await close_recorded(server.csms, "SHY")
        waited = time.monotonic() - told
    assert (record.code, record.reason, record.by) == (4000, "maintenance", "csms")
    assert 0.8 <= waited < 1.9, f"recorded {waited:.2f} s after the close, not after 1 s"


async def test_an_unexpected_failure_closes_1011_internal_error(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        station = await booted(server.csms, "OOPS")

        async def broken() -> int:
            raise RuntimeError("planted: the allocator fails")

        server.csms.gateway.allocator.allocate = broken  # type: ignore[method-assign]
        await station.send(START)  # needs a transaction id
        close = await next_close(station)
        await station._send(close.response())
        assert (close.code, close.reason) == (1011, "internal error")
        record = await close_recorded(server.csms, "OOPS")
    assert (record.code, record.reason, record.by) == (1011, "internal error", "csms")


async def test_a_session_whose_opening_cannot_be_recorded_is_closed_1011(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        with gate(server.csms, lambda e: isinstance(e, SessionOpened), fail=True):
            station = await RawStation.connect(server.port, "NOLOG")
            close = await next_close(station)
        assert (close.code, close.reason) == (1011, "event store unavailable")
        assert "NOLOG" not in server.csms.gateway.sessions


async def test_no_ping_is_sent_when_ping_interval_is_0(tmp_path: Path) -> None:
    async with served(tmp_path, ping_interval=0) as server:
        station = await booted(server.csms, "QUIET")
        # RawStation.call fails on anything but the answer: a ping would come first.
        assert (await station.call(HEARTBEAT))[:2] == [3, "hb"]


# -- frames from the station --------------------------------------------------------------------


async def test_a_malformed_frame_is_answered_recorded_as_such_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    malformed = '[2,"m","Heartbeat"]'  # no payload
    async with served(tmp_path) as server:
        station = await booted(server.csms, "SLOPPY")
        answer = await station.call(malformed)
        assert answer[:2] == [4, "m"]
        assert (await station.call(HEARTBEAT))[:2] == [3, "hb"], "the session goes on"
        log = [e for e in await recorded(server.csms) if isinstance(e, FrameLogged)]
    [inbound] = [e for e in log if e.direction == "in" and e.text == malformed]
    assert inbound.note == "malformed"


async def test_a_message_in_fragments_is_whole_even_when_we_send_between_them(
    tmp_path: Path,
) -> None:
    """The station's text decoder (the one that keeps bytes that are not UTF-8) is put in
    place once, at the upgrade: our CALL sent between two fragments of the station's message
    must not reset it (the second fragment would then be a protocol error, 1002)."""
    async with served(tmp_path) as server:
        station = await booted(server.csms, "PIECES")
        half = len(HEARTBEAT) // 2
        await station._send(TextMessage(data=HEARTBEAT[:half], message_finished=False))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.csms.gateway.call, "PIECES", "ClearCache", {})
            ours = json.loads(await station.receive())  # sent while the message is half in
            await station._send(TextMessage(data=HEARTBEAT[half:], message_finished=True))
            assert json.loads(await station.receive())[:2] == [3, "hb"]
            await station.send(json.dumps([3, ours[1], {"status": "Accepted"}]))


async def test_a_station_gone_before_its_answer_is_sent_closed_the_session_itself(
    tmp_path: Path,
) -> None:
    """The answer is committed, the station has left when it is sent: the session ends as
    the station closed it, not as a failure of ours."""
    async with served(tmp_path) as server:
        station = await booted(server.csms, "HASTY")
        with gate(server.csms, frame("in", 2)) as commit:
            await station.send(HEARTBEAT)
            with trio.fail_after(STEP):
                await commit.reached.wait()
            await leave(station)
            commit.release()
            record = await close_recorded(server.csms, "HASTY")
    assert (record.code, record.reason, record.by) == (1000, "bye", "station")


async def test_answers_of_exactly_max_frame_bytes_are_sent(tmp_path: Path) -> None:
    """The boot's answer is longer than the boot: sent at the limit, withheld beyond."""
    async with served(tmp_path, "calibrate") as server:
        station = await RawStation.connect(server.port, "SIZE")
        await station.send(BOOT)
        answer = await station.receive()
    assert isinstance(answer, str) and answer.isascii()
    size = len(answer)  # always this long: status, currentTime in milliseconds, interval
    assert size > len(BOOT)
    async with served(tmp_path, max_frame_bytes=size) as server:
        station = await RawStation.connect(server.port, "SIZE")
        assert (await station.call(BOOT))[2]["status"] == "Accepted", "at the limit: sent"
    async with served(tmp_path, "below", max_frame_bytes=size - 1) as server:
        station = await RawStation.connect(server.port, "SIZE")
        withheld = await station.call(BOOT)
    assert withheld[0] == 4 and withheld[2] == "InternalError", "over the limit: withheld"


# -- our CALLs ----------------------------------------------------------------------------------


async def test_our_call_returns_the_answer_or_raises_the_call_error(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        station = await booted(server.csms, "ASKED")
        gateway = server.csms.gateway
        results: list[Any] = []

        async def ask(action: str, payload: dict[str, Any]) -> None:
            try:
                results.append(await gateway.call("ASKED", action, payload))
            except CallError as exc:
                results.append((exc.code, exc.description))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "ClearCache", {})
            sent = json.loads(await station.receive())
            await station.send(json.dumps([3, sent[1], {"status": "Accepted"}]))
            await eventually(lambda: results, what="the first answer")
            nursery.start_soon(ask, "ClearCache", {})
            sent = json.loads(await station.receive())
            await station.send(json.dumps([4, sent[1], "NotSupported", "not here", {}]))
    assert results == [{"status": "Accepted"}, ("NotSupported", "not here")]


async def test_calls_queued_when_the_station_leaves_are_told_it_left(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        station = await booted(server.csms, "GONE")
        told: list[str] = []

        async def ask() -> None:
            with pytest.raises(StationOffline) as offline:
                await server.csms.gateway.call("GONE", "ClearCache", {})
            told.append(offline.value.reason)

        with trio.fail_after(STEP):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                await station.receive()  # the first CALL, in flight; never answered
                nursery.start_soon(ask)  # queued behind it
                await trio.testing.wait_all_tasks_blocked()
                await leave(station)
    assert told == ["disconnected before answering"] * 2


async def queue_and_give_up(gateway: Gateway, station: str, payload: dict[str, Any]) -> None:
    """A DataTransfer queued behind the CALL in flight whose caller gives up at once; it
    stays in the queue, marked done."""
    with trio.CancelScope() as scope:
        scope.cancel()
        await gateway.call(station, "DataTransfer", payload)


async def test_a_call_whose_caller_gave_up_is_skipped_and_the_next_sent(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        station = await booted(server.csms, "SKIP")
        gateway = server.csms.gateway
        answers: list[Any] = []

        async def ask(payload: dict[str, Any]) -> None:
            answers.append(await gateway.call("SKIP", "DataTransfer", payload))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, {"vendorId": "first"})
            first = json.loads(await station.receive())
            await queue_and_give_up(gateway, "SKIP", {"vendorId": "abandoned"})
            nursery.start_soon(ask, {"vendorId": "third"})
            await trio.testing.wait_all_tasks_blocked()
            await station.send(json.dumps([3, first[1], {"status": "Accepted"}]))
            after = json.loads(await station.receive())
            assert after[3] == {"vendorId": "third"}, "the abandoned CALL is never sent"
            await station.send(json.dumps([3, after[1], {"status": "Rejected"}]))
    assert answers == [{"status": "Accepted"}, {"status": "Rejected"}]


async def test_a_full_queue_refuses_a_call_with_station_busy(tmp_path: Path) -> None:
    async with served(tmp_path, outbound_queue=1) as server:
        station = await booted(server.csms, "FULL")
        gateway = server.csms.gateway
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gateway.call, "FULL", "ClearCache", {})
            await station.receive()  # in flight
            await queue_and_give_up(gateway, "FULL", {"vendorId": "queued"})  # the queue: 1
            with pytest.raises(StationBusy) as busy:
                await gateway.call("FULL", "ClearCache", {})
            assert busy.value.limit == 1
            nursery.cancel_scope.cancel()


async def test_a_call_of_exactly_max_frame_bytes_is_sent(tmp_path: Path) -> None:
    payload = {"vendorId": "v", "data": "x" * 200}
    # A CALL's message id is a UUID: 36 characters, whatever it is.
    size = len(encode_call("0" * 36, "DataTransfer", payload).encode())
    async with served(tmp_path, max_frame_bytes=size) as server:
        station = await booted(server.csms, "EXACT")
        gateway = server.csms.gateway
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gateway.call, "EXACT", "DataTransfer", payload)
            sent = await station.receive()
            assert isinstance(sent, str) and len(sent.encode()) == size
            await station.send(json.dumps([3, json.loads(sent)[1], {"status": "Accepted"}]))
        with pytest.raises(CallTooLarge):
            await gateway.call("EXACT", "DataTransfer", {**payload, "data": "x" * 201})


async def test_a_station_gone_while_our_call_is_committed_is_told_to_its_caller(
    tmp_path: Path,
) -> None:
    """The station leaves while the CALL we are about to send is being committed: the session
    ends as the station closed it, and the caller is told at once (it used to wait forever:
    the CALL was in no queue and not yet in flight when the session ended)."""
    async with served(tmp_path) as server:
        station = await booted(server.csms, "AWAY")
        told: list[StationOffline] = []

        async def ask() -> None:
            try:
                await server.csms.gateway.call("AWAY", "ClearCache", {})
            except StationOffline as exc:
                told.append(exc)

        async with trio.open_nursery() as nursery:
            with gate(server.csms, frame("out", 2)) as commit:
                nursery.start_soon(ask)
                with trio.fail_after(STEP):
                    await commit.reached.wait()
                await leave(station)
                await eventually(lambda: told, what="the caller to be told")
                commit.release()
                record = await close_recorded(server.csms, "AWAY")
    assert (record.code, record.reason, record.by) == (1000, "bye", "station")
    assert [e.reason for e in told] == ["disconnected before answering"]


# -- who is connecting: the remote recorded, wsproto's refusals --------------------------------


async def test_the_remote_address_and_port_are_recorded(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        station = await RawStation.connect(server.port, "WHERE")
        port = station.stream.socket.getsockname()[1]
        assert (await station.call(BOOT))[0] == 3
        status, _ = await handshake_answer(server.port, "/")  # no identity: 400
        assert status == 400
        log = await recorded(server.csms)
    [opened] = [e for e in log if isinstance(e, SessionOpened)]
    assert opened.remote == f"127.0.0.1:{port}"
    [refused] = rejections(log)
    assert refused.remote.startswith("127.0.0.1:") and refused.remote != "127.0.0.1:"


async def test_a_peer_reset_before_its_connection_is_accepted_harms_nothing(
    tmp_path: Path,
) -> None:
    """A peer that connects and resets before the server accepts: its address cannot be read
    any more (``ENOTCONN``); the connection is let go, the server goes on."""
    async with served(tmp_path) as server:
        # Blocking calls, no checkpoint: the server accepts only once the reset is done.
        peer = socket.create_connection(("127.0.0.1", server.port))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        gateway = server.csms.gateway
        await eventually(
            lambda: gateway.statistics().handshakes_abandoned == 1, what="the reset let go"
        )
        assert (await (await booted(server.csms, "NEXT")).call(HEARTBEAT))[0] == 3


async def test_a_request_wsproto_refuses_is_recorded_with_wsproto_s_reason(tmp_path: Path) -> None:
    async with served(tmp_path) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n")  # no Upgrade
            with trio.fail_after(STEP):
                assert (await stream.receive_some()).startswith(b"HTTP/1.1 400 ")
        [refused] = await eventually(lambda: _rejected(server.csms), what="the recorded refusal")
    assert refused.reason == "malformed opening handshake: Missing header, 'Connection: Upgrade'"


async def _rejected(csms: CentralSystem) -> list[HandshakeRejected]:
    return rejections(await recorded(csms))


# -- connection limits: the per-address limit, many refusals, refusals the store cannot record -


@asynccontextmanager
async def one_held(server: Served) -> AsyncIterator[trio.SocketStream]:
    """A connection that says nothing (its handshake in flight), held until the block ends
    (and then until the server has let it go)."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await eventually(
            lambda: server.csms.gateway.statistics().connections == 1, what="one connection held"
        )
        yield stream
    gateway = server.csms.gateway
    await eventually(lambda: gateway.statistics().connections == 0, what="the connection gone")


async def test_a_per_address_limit_of_one_refuses_the_second_connection(tmp_path: Path) -> None:
    async with served(tmp_path, max_connections_per_address=1, handshake_timeout=30) as server:
        async with one_held(server):
            status, headers = await handshake_answer(server.port)
        assert (status, headers["retry-after"]) == (503, "10")
        assert server.csms.gateway.statistics().refused == {"max_connections_per_address": 1}


async def test_a_connection_closed_frees_one_place_of_its_address(tmp_path: Path) -> None:
    async with served(tmp_path, max_connections_per_address=2, handshake_timeout=30) as server:
        gateway = server.csms.gateway
        first = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with await trio.open_tcp_stream("127.0.0.1", server.port):
            await eventually(lambda: gateway.statistics().connections == 2, what="two held")
            await first.aclose()
            await eventually(lambda: gateway.statistics().connections == 1, what="one left")
            async with await trio.open_tcp_stream("127.0.0.1", server.port):
                await eventually(lambda: gateway.statistics().connections == 2, what="two again")
                status, _ = await handshake_answer(server.port)
        assert status == 503, "two from this address are still held"


async def test_every_refusal_is_answered_however_many_came_before(tmp_path: Path) -> None:
    """``MAX_REFUSALS`` (64) bounds the refusals answered *at once*; one after the other,
    the 65th and later are answered too."""
    async with (
        served(tmp_path, max_connections=1, handshake_timeout=30) as server,
        one_held(server),
    ):
        for _ in range(70):
            status, _ = await handshake_answer(server.port)
            assert status == 503


async def test_at_most_64_refusals_are_answered_at_once(tmp_path: Path) -> None:
    """``MAX_REFUSALS``: 65 silent peers refused together; each answer waits half a second
    for the peer's request, and while 64 wait, the 65th is closed without an answer."""
    async with (
        served(tmp_path, max_connections=1, handshake_timeout=30) as server,
        one_held(server),
    ):
        assert (await handshake_answer(server.port))[0] == 503  # one before: counted back
        # Blocking connects, no checkpoint: the server accepts the 65 in one burst.
        peers = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(65)]
        answers = []
        for peer in peers:
            async with trio.SocketStream(trio.socket.from_stdlib_socket(peer)) as stream:
                with trio.fail_after(STEP):
                    answers.append((await stream.receive_some(12))[:12])
    assert sorted(answers) == [b""] + [b"HTTP/1.1 503"] * 64


async def test_a_silent_refused_peer_is_answered_after_half_a_second(tmp_path: Path) -> None:
    """A refused connection may take ``REFUSAL_READ_TIMEOUT`` (0.5 s) to send its request;
    one that sends nothing is answered 503 then (its path recorded empty)."""
    async with served(tmp_path, max_connections=1, handshake_timeout=30) as server:
        async with one_held(server):
            silent = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with silent:
                started = time.monotonic()
                with trio.fail_after(STEP):
                    answer = await silent.receive_some()
                waited = time.monotonic() - started
        [refused] = await eventually(lambda: _rejected(server.csms), what="the recorded refusal")
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert 0.4 <= waited < 1.4, f"answered after {waited:.2f} s, not after 0.5 s"
    assert (refused.status, refused.path) == (503, "")


async def test_refusals_are_answered_when_the_store_cannot_record_them(tmp_path: Path) -> None:
    async with served(tmp_path, max_connections=1, handshake_timeout=30) as server:
        csms = server.csms
        with gate(csms, lambda e: isinstance(e, HandshakeRejected), fail=True) as failing:
            status, _ = await handshake_answer(server.port, "/")  # no identity
            assert failing.reached.is_set() and status == 400
        async with one_held(server):
            with gate(csms, lambda e: isinstance(e, HandshakeRejected), fail=True) as failing:
                status, _ = await handshake_answer(server.port)
                await eventually(lambda: failing.reached.is_set(), what="the failed record")
                assert status == 503
        # Still serving.
        assert (await (await booted(csms, "AFTER")).call(HEARTBEAT))[0] == 3


# -- TLS: refused before its handshake, a failed handshake recorded ----------------------------


@pytest.fixture
def tls(tmp_path: Path) -> tuple[TlsSettings, trustme.CA]:
    """``wss://`` on a port of its own, client certificates checked against an operator CA."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    settings = TlsSettings(
        cert_file=str(tmp_path / "server.pem"),
        key_file=str(tmp_path / "server.key"),
        ca_file=str(tmp_path / "ca.pem"),
        port=0,
    )
    return settings, ca


async def tls_handshake(port: int, context: ssl.SSLContext) -> trio.SSLStream[Any]:
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    with trio.fail_after(STEP):
        await stream.do_handshake()
    return stream


async def test_a_tls_connection_beyond_a_limit_is_closed_before_its_handshake(
    tmp_path: Path, tls: tuple[TlsSettings, trustme.CA]
) -> None:
    settings, ca = tls
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with served(tmp_path, tls=settings, max_connections=1, handshake_timeout=30) as server:
        tls_port = server.csms.gateway.tls_port
        assert tls_port is not None
        async with one_held(server):
            with pytest.raises(trio.BrokenResourceError):  # no TLS work spent on it
                await tls_handshake(tls_port, context)
        assert server.csms.gateway.statistics().refused == {"max_connections": 1}
        # Below the limit, the TLS handshake is made and the upgrade answered.
        secure = await tls_handshake(tls_port, context)
        assert (await handshake_answer(tls_port, stream=secure))[0] == 101


async def test_a_failed_tls_handshake_is_recorded_once_with_its_cause(
    tmp_path: Path, tls: tuple[TlsSettings, trustme.CA]
) -> None:
    settings, ca = tls
    context = ssl.create_default_context()
    ca.configure_trust(context)
    rogue = trustme.CA()  # a client certificate the operator CA never issued
    rogue.issue_cert("CP-3", common_name="CP-3").configure_cert(context)
    async with served(tmp_path, tls=settings) as server:
        tls_port = server.csms.gateway.tls_port
        assert tls_port is not None
        with pytest.raises(trio.BrokenResourceError):
            stream = await tls_handshake(tls_port, context)
            await stream.receive_some()  # TLS 1.3: the server's verdict comes after
        [refused] = await eventually(lambda: _rejected(server.csms), what="the recorded refusal")
        statistics = server.csms.gateway.statistics()
    assert (refused.status, refused.cause) == (0, "tls_handshake_failed")  # no HTTP status
    assert "certificate" in refused.reason.lower(), refused.reason  # the SSL error, not ""
    assert statistics.handshakes_abandoned == statistics.handshakes_timed_out == 0
