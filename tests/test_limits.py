"""A gateway no one can exhaust (issue 10, item 5): handshake deadline, connection limits,
floods, the bounded retransmission memory, message ids per connection, undecodable frames,
the outbound frame cap, dangling sessions of dead nodes. Real sockets on loopback, the
server in this process (``tests/harness.py``), so its descriptors are this process's."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chargeledger.core.errors import CallTooLarge
from chargeledger.core.events import (
    FrameLogged,
    HandshakeRejected,
    SessionClosed,
    SessionOpened,
    session_stream,
)
from chargeledger.core.gateway import GatewayStatistics
from chargeledger.core.http.problems import command_problem
from chargeledger.core.settings import Settings
from chargeledger.core.store import open_store
from tests.harness import RunningServer, raw_station, running_server
from tests.polling import wait_for

BOOT = '[2,"boot","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
UPGRADE = (
    b"GET /ocpp/CP1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)


def descriptors() -> int:
    """File descriptors open in this process (the server's included)."""
    return len(os.listdir("/proc/self/fd"))


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'limits.db'}"


def stats(server: RunningServer) -> GatewayStatistics:
    assert server.csms is not None
    return server.csms.gateway.statistics()


def events(server: RunningServer) -> list[Any]:
    assert server.csms is not None
    return [r.event for r in server.csms.store.iter_all()]


def address(server: RunningServer) -> tuple[str, int]:
    assert server.csms is not None
    return ("127.0.0.1", server.csms.port)


async def booted(server: RunningServer, name: str) -> Any:
    ws = await raw_station(server.url, name, ["ocpp1.6"])
    await ws.send(BOOT)
    assert json.loads(await ws.recv())[2]["status"] == "Accepted"
    return ws


async def close_of(ws: Any) -> tuple[int, str] | None:
    """Read until the server closes ``ws``: its close code and reason."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else None


# -- the handshake deadline -----------------------------------------------------------------


def test_connections_closed_mid_handshake_are_released_at_once(tmp_path: Path) -> None:
    """1,500 peers that send half an upgrade request (or nothing) and leave: each is released
    when it leaves, long before the (here 60 s) deadline."""
    # max_handshakes above the count: a server lagging under load may hold many at once.
    settings = Settings(port=0, store=sqlite(tmp_path), handshake_timeout=60, max_handshakes=4000)
    with running_server(settings) as server:
        baseline = descriptors()
        started = time.monotonic()
        for n in range(1_500):
            with socket.create_connection(address(server), timeout=10) as sock:
                if n % 3:
                    sock.sendall(UPGRADE[: n % 60])
        wait_for(lambda: descriptors() <= baseline, what="the descriptors back at the baseline")
        elapsed = time.monotonic() - started
        assert elapsed < 30, f"released in {elapsed:.1f} s: at the deadline, not at once"
        wait_for(lambda: stats(server).connections == 0, what="no connection held")
        # Each left before its upgrade; the few whose half request and end of stream reached
        # wsproto together are refused as malformed (recorded) instead: none waited out the
        # deadline, none was refused for a limit.
        assert server.csms is not None
        malformed = sum(
            isinstance(r.event, HandshakeRejected)
            and r.event.reason.startswith("malformed opening handshake")
            for r in server.csms.store.iter_all()
        )
        final = stats(server)
        assert (final.handshakes_timed_out, final.refused) == (0, {})
        assert final.handshakes_abandoned + malformed == 1_500
        # Still serving.
        assert asyncio.run(_boots(server, "AFTER"))


async def _boots(server: RunningServer, name: str) -> bool:
    ws = await booted(server, name)
    await ws.close()
    return True


def test_half_open_connections_are_closed_at_the_deadline(tmp_path: Path) -> None:
    """1,000 peers that connect and then say nothing (or half a request) and stay: each is
    closed at the deadline, and the descriptors return to the baseline."""
    settings = Settings(port=0, store=sqlite(tmp_path), handshake_timeout=1.0, max_handshakes=2000)
    with running_server(settings) as server:
        baseline = descriptors()
        peers = []
        for n in range(1_000):
            sock = socket.create_connection(address(server), timeout=15)
            if n % 2:
                sock.sendall(UPGRADE[:40])
            peers.append(sock)
        opened = time.monotonic()
        wait_for(
            lambda: stats(server).handshakes_timed_out == 1_000,
            what="every half-open connection timed out",
        )
        closed_in = time.monotonic() - opened
        for sock in peers:
            assert sock.recv(100) == b"", "the server closed it without an answer"
            sock.close()
        wait_for(lambda: descriptors() <= baseline, what="the descriptors back at the baseline")
        assert closed_in < 10, f"the 1 s deadline took {closed_in:.1f} s"
        # A whole request is still answered.
        with socket.create_connection(address(server), timeout=15) as sock:
            sock.sendall(UPGRADE)
            assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")


def test_a_handshake_refused_before_our_code_runs_is_recorded(tmp_path: Path) -> None:
    """wsproto refuses a request that is not a WebSocket upgrade (no Connection header,
    malformed HTTP) and trio-websocket answers 400 itself: recorded all the same."""
    garbage = [b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01 not http\r\n\r\n"]
    with running_server(Settings(port=0, store=sqlite(tmp_path))) as server:
        for request in garbage:
            with socket.create_connection(address(server), timeout=10) as sock:
                sock.sendall(request)
                assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
        wait_for(
            lambda: len([e for e in events(server) if isinstance(e, HandshakeRejected)]) == 2,
            what="both refusals recorded",
        )
        rejected = [e for e in events(server) if isinstance(e, HandshakeRejected)]
    assert [(r.status, r.remote) for r in rejected] == [(400, "127.0.0.1")] * 2
    assert all(r.reason.startswith("malformed opening handshake: ") for r in rejected)


# -- connection limits: 503 with Retry-After, recorded ---------------------------------------


@pytest.mark.parametrize(
    "limit", ["max_handshakes", "max_connections", "max_connections_per_address"]
)
def test_beyond_a_connection_limit_a_station_is_told_to_retry(tmp_path: Path, limit: str) -> None:
    settings = Settings(port=0, store=sqlite(tmp_path), handshake_timeout=30, **{limit: 5})
    with running_server(settings) as server:
        held = [socket.create_connection(address(server), timeout=10) for _ in range(5)]
        wait_for(lambda: stats(server).connections == 5, what="five connections held")

        async def refused() -> websockets.InvalidStatus:
            with pytest.raises(websockets.InvalidStatus) as caught:
                await raw_station(server.url, "STORM", ["ocpp1.6"])
            return caught.value

        answer = asyncio.run(refused()).response
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "10"
        assert stats(server).refused == {limit: 1}
        rejected = wait_for(
            lambda: [e for e in events(server) if isinstance(e, HandshakeRejected)],
            what="the recorded refusal",
        )
        assert [(r.status, r.path, r.remote) for r in rejected] == [
            (503, "/ocpp/STORM", "127.0.0.1")
        ]
        assert limit in rejected[0].reason
        for sock in held:
            sock.close()
        wait_for(lambda: stats(server).connections == 0, what="the held connections gone")
        assert asyncio.run(_boots(server, "STORM")), "not a collapse: served once below it"


# -- floods -------------------------------------------------------------------------------------


def test_a_frame_flood_closes_1008_and_is_recorded(tmp_path: Path) -> None:
    async def scenario(server: RunningServer) -> tuple[int, str] | None:
        ws = await booted(server, "FLOOD")
        for n in range(200):
            await ws.send(f'[2,"h{n}","Heartbeat",{{}}]')
        return await close_of(ws)

    settings = Settings(port=0, store=sqlite(tmp_path), max_frames_per_second=20)
    with running_server(settings) as server:
        assert asyncio.run(scenario(server)) == (1008, "more than 20 frames per second")
        closes = wait_for(
            lambda: [e for e in events(server) if isinstance(e, SessionClosed)],
            what="the recorded close",
        )
        assert [(c.code, c.by) for c in closes] == [(1008, "csms")]
        limited = [e for e in events(server) if isinstance(e, FrameLogged) and e.note]
        assert [e.note for e in limited] == ["rate-limited"]
        assert stats(server).floods == {"frames": 1}


def test_a_ping_flood_closes_1008(tmp_path: Path) -> None:
    async def scenario(server: RunningServer) -> tuple[int, str] | None:
        ws = await booted(server, "PINGS")
        for _ in range(50):
            await ws.ping()
        return await close_of(ws)

    settings = Settings(port=0, store=sqlite(tmp_path), max_pings_per_second=5)
    with running_server(settings) as server:
        assert asyncio.run(scenario(server)) == (1008, "more than 5 pings per second")
        assert stats(server).floods == {"pings": 1}
        closes = wait_for(
            lambda: [e for e in events(server) if isinstance(e, SessionClosed)],
            what="the recorded close",
        )
        assert [(c.code, c.reason) for c in closes] == [(1008, "more than 5 pings per second")]


def test_pings_within_the_rate_keep_the_session(tmp_path: Path) -> None:
    async def scenario(server: RunningServer) -> list[Any]:
        ws = await booted(server, "CALM")
        for _ in range(3):
            await (await ws.ping())
        await ws.send('[2,"h","Heartbeat",{}]')
        answer = json.loads(await ws.recv())
        await ws.close()
        return answer

    settings = Settings(port=0, store=sqlite(tmp_path), max_pings_per_second=5)
    with running_server(settings) as server:
        assert asyncio.run(scenario(server))[:2] == [3, "h"]
        assert stats(server).floods == {}


# -- frames that are not UTF-8, frames too large to send ---------------------------------------


def test_a_text_frame_that_is_not_utf8_is_recorded_before_the_close(tmp_path: Path) -> None:
    raw = b'[2,"x","Heartbeat",{"a":"\xff\xfe\xed\xa0\x80"}]'

    async def scenario(server: RunningServer) -> tuple[int, str] | None:
        ws = await booted(server, "BYTES")
        await ws.send(raw, text=True)
        return await close_of(ws)

    with running_server(Settings(port=0, store=sqlite(tmp_path))) as server:
        assert asyncio.run(scenario(server)) == (1007, "a text frame that is not UTF-8")
        closes = wait_for(
            lambda: [e for e in events(server) if isinstance(e, SessionClosed)],
            what="the recorded close",
        )
        log = events(server)
    [frame] = [e for e in log if isinstance(e, FrameLogged) and e.note == "invalid-utf8"]
    assert base64.b64decode(frame.binary or "") == raw and frame.text == ""
    assert log.index(frame) < log.index(closes[0]), "recorded before the close"
    assert [(c.code, c.by) for c in closes] == [(1007, "csms")]


def test_a_call_larger_than_the_frame_limit_is_not_sent(tmp_path: Path) -> None:
    async def scenario(server: RunningServer) -> Exception:
        ws = await booted(server, "SMALL")
        assert server.csms is not None
        gateway = server.csms.gateway
        payload = {"vendorId": "v", "data": "x" * 2_000}
        with pytest.raises(CallTooLarge) as caught:
            await server.arun(gateway.call, "SMALL", "DataTransfer", payload)
        await ws.send('[2,"h","Heartbeat",{}]')
        assert json.loads(await ws.recv())[1] == "h", "nothing else came first"
        await ws.close()
        return caught.value

    with running_server(Settings(port=0, store=sqlite(tmp_path), max_frame_bytes=1024)) as server:
        error = asyncio.run(scenario(server))
        sent = [e for e in events(server) if isinstance(e, FrameLogged) and e.direction == "out"]
    assert isinstance(error, CallTooLarge) and error.limit == 1024 and error.size > 2_000
    assert not any("DataTransfer" in e.text for e in sent), "nothing recorded or sent"
    assert command_problem(error, "r", "SMALL").status_code == 413


# -- message ids: unique per connection only ---------------------------------------------------


def test_message_ids_restarted_after_a_reconnect_are_new_calls(tmp_path: Path) -> None:
    start = (
        '[2,"3","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,'
        '"timestamp":"2026-01-01T00:00:00Z"}]'
    )

    async def scenario(server: RunningServer) -> list[Any]:
        first = await booted(server, "RESTART")
        await first.send(
            '[2,"2","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]'
        )
        assert json.loads(await first.recv()) == [3, "2", {}]
        await first.send(start)
        started = json.loads(await first.recv())
        await first.close()
        second = await raw_station(server.url, "RESTART", ["ocpp1.6"])
        # Its counter restarted: "2" is a different CALL now, on a new connection.
        await second.send(
            '[2,"2","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Preparing"}]'
        )
        restarted = json.loads(await second.recv())
        await second.send(start)  # retransmitted verbatim after the reconnect
        again = json.loads(await second.recv())
        await second.send('[2,"2","Heartbeat",{}]')  # "2" reused on the same connection
        reused = json.loads(await second.recv())
        await second.close()
        return [started, restarted, again, reused]

    with running_server(Settings(port=0, store=sqlite(tmp_path))) as server:
        started, restarted, again, reused = asyncio.run(scenario(server))
    assert restarted == [3, "2", {}], "a new CALL, answered normally"
    assert again == started and isinstance(started[2]["transactionId"], int)
    assert reused[:3] == [4, "2", "ProtocolError"]


# -- the retransmission memory -------------------------------------------------------------------


def test_thousands_of_unknown_ids_keep_the_retransmission_memory_bounded(tmp_path: Path) -> None:
    total, per_station = 64 * 1024, 8 * 1024
    settings = Settings(
        port=0,
        store=sqlite(tmp_path),
        retransmission_total_bytes=total,
        retransmission_station_bytes=per_station,
    )
    data = "d" * 1_500

    async def station(server: RunningServer, name: str) -> None:
        ws = await booted(server, name)
        for n in range(8):
            await ws.send(f'[2,"{n}","DataTransfer",{{"vendorId":"v","data":"{data}"}}]')
            await ws.recv()
        await ws.close()

    async def scenario(server: RunningServer) -> int:
        peak = 0
        for group in range(20):
            await asyncio.gather(*(station(server, f"ID{group}-{n}") for n in range(50)))
            peak = max(peak, stats(server).retransmission_bytes)
        return peak

    with running_server(settings) as server:
        peak = asyncio.run(scenario(server))
        final = stats(server)
    assert 0 < peak <= total and final.retransmission_bytes <= total
    assert final.retransmission_dropped > 900, "least recently used windows were dropped"
    assert final.retransmission_stations <= total // 1_500


def test_windows_of_stations_gone_for_a_while_are_released(tmp_path: Path) -> None:
    settings = Settings(port=0, store=sqlite(tmp_path), retransmission_release_after=1.0)
    with running_server(settings) as server:

        async def scenario() -> None:
            ws = await booted(server, "GONE")
            await ws.close()

        asyncio.run(scenario())
        assert stats(server).retransmission_stations == 1
        wait_for(lambda: stats(server).retransmission_stations == 0, what="the window released")
        assert stats(server).retransmission_bytes == 0


# -- sessions left open by nodes that died -------------------------------------------------------


def test_sessions_of_dead_nodes_are_closed_at_startup_not_those_of_live_ones(
    tmp_path: Path,
) -> None:
    url = sqlite(tmp_path)
    now = time.time()
    opened = {
        "MINE": ("me", now - 10),  # this node, restarted: closed whatever their age
        "DEAD": ("dead-node", now - 3_600),  # nothing recorded for an hour: closed
        "LIVE": ("live-node", now - 30),  # recorded 30 s ago: left alone
    }
    store = open_store(url)
    try:
        store.append(
            [
                (
                    session_stream(f"s-{station}"),
                    1,
                    SessionOpened(
                        station=station,
                        session=f"s-{station}",
                        at=at,
                        protocol="ocpp1.6",
                        node=node,
                    ),
                )
                for station, (node, at) in opened.items()
            ]
        )
    finally:
        store.close()
    with running_server(Settings(port=0, store=url, node="me", node_timeout=600)) as server:
        closes = [e for e in events(server) if isinstance(e, SessionClosed)]
    assert sorted((c.station, c.code) for c in closes) == [("DEAD", 1006), ("MINE", 1006)]
    assert any("dead-node" in c.reason for c in closes)


def test_the_default_node_is_the_host_name_whatever_the_port() -> None:
    assert Settings(port=9000).node == Settings(port=9001).node == socket.gethostname()


# -- the limits in the metrics, the cap through the HTTP API -----------------------------------


def test_limits_are_in_the_metrics_and_an_oversize_call_is_a_413(tmp_path: Path) -> None:
    settings = Settings(
        port=0, store=sqlite(tmp_path), api_port=0, max_handshakes=1, max_frame_bytes=1024
    )

    async def scenario(server: RunningServer) -> tuple[httpx.Response, str]:
        assert server.csms is not None
        ws = await booted(server, "MET")
        base = f"http://127.0.0.1:{server.csms.api_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            big = await http.post(
                "/api/stations/MET/calls/DataTransfer", json={"vendorId": "v", "data": "x" * 2000}
            )
            with socket.create_connection(address(server), timeout=10):  # one handshake held
                await asyncio.to_thread(
                    wait_for, lambda: stats(server).handshakes == 1, what="a handshake in flight"
                )
                with pytest.raises(websockets.InvalidStatus):
                    await raw_station(server.url, "REFUSED", ["ocpp1.6"])
                metrics = (await http.get("/metrics")).text
        await ws.close()
        return big, metrics

    with running_server(settings) as server:
        big, metrics = asyncio.run(scenario(server))
    assert big.status_code == 413 and big.json()["type"].endswith("call-too-large")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['chargeledger_limit{limit="max_handshakes"}'] == 1
    assert samples['chargeledger_limit{limit="handshake_timeout"}'] == 10
    assert samples['chargeledger_connections_refused_total{limit="max_handshakes"}'] == 1
    assert samples["chargeledger_handshakes_in_flight"] == 1
    assert samples["chargeledger_connections"] == 2
    assert samples['chargeledger_floods_total{kind="frames"}'] == 0
    assert 0 < samples["chargeledger_retransmission_bytes"] <= 128 * 1024 * 1024
    assert samples["chargeledger_retransmission_calls"] == 1
