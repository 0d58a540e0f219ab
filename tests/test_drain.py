"""Draining a node (``POST /api/node/drain``, ``chargeledger drain``, SIGTERM): readiness turns
503, the listener closes, each session is closed with 1012 once idle (a CALL of ours in
flight is waited for, at most ``drain_timeout``), every close recorded, then the server stops.
Real websockets and ``ocpp`` charge points; the move to another node behind a load balancer
is tests/test_haproxy.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from chargeledger.core.errors import StationOffline
from chargeledger.core.events import FrameLogged, SessionClosed
from chargeledger.core.settings import Settings
from chargeledger.core.store import open_store
from tests.harness import RunningServer
from tests.polling import eventually

__all__: list[str] = []


class SlowStation(ChargePoint):  # type: ignore[misc]
    """Answers GetConfiguration only once ``release`` is set (never, when it is not)."""

    release: asyncio.Event

    @on(Action.get_configuration)
    async def on_get_configuration(self, **_: Any) -> call_result.GetConfiguration:
        await self.release.wait()
        return call_result.GetConfiguration(configuration_key=[])


def _settings(store: Path, **more: Any) -> Settings:
    return Settings(port=0, store=f"sqlite:///{store}", node="drain-node", api_port=0, **more)


async def _connect(server: RunningServer, name: str) -> tuple[SlowStation, asyncio.Task[Any]]:
    ws = await websockets.connect(
        f"{server.url}/{name}", subprotocols=[websockets.Subprotocol("ocpp1.6")]
    )
    station = SlowStation(name, ws)
    station.release = asyncio.Event()
    reader = asyncio.create_task(station.start())
    await station.call(
        call.BootNotification(charge_point_vendor="V", charge_point_model="M"), suppress=False
    )
    return station, reader


def _log(path: Path) -> list[Any]:
    store = open_store(f"sqlite:///{path}", create=False)
    try:
        return [recorded.event for recorded in store.read(limit=10_000)]
    finally:
        store.close()


def test_a_drain_waits_for_our_call_then_closes_with_1012_and_stops(tmp_path: Path) -> None:
    server = RunningServer(_settings(tmp_path / "d.db", drain_timeout=20)).start()
    try:
        csms = server.csms
        assert csms is not None and csms.api_port is not None
        base = f"http://127.0.0.1:{csms.api_port}"

        async def scenario() -> tuple[Any, int | None]:
            station, reader = await _connect(server, "DR-1")
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                ready = await http.get("/health/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json() | {"position": 0} == {
                    "ready": True,
                    "position": 0,
                    "node": "drain-node",
                    "stations": 1,
                }
                asking = asyncio.create_task(server.arun(csms.call, "DR-1", "GetConfiguration", {}))
                await eventually(
                    lambda: csms.gateway.sessions["DR-1"].in_flight is not None,
                    what="our CALL in flight",
                )
                wrong = await http.post("/api/node/drain", json={"code": 1000})
                assert wrong.status_code == 400
                drained = await http.post("/api/node/drain", json={"code": 1012})
                assert drained.status_code == 202, drained.text
                assert drained.json() == {
                    "started": True,
                    "node": "drain-node",
                    "code": 1012,
                    "stations": 1,
                    "timeout": 20.0,
                }
                again = await http.post("/api/node/drain")
                assert again.json()["started"] is False
                # Draining, but the CALL in flight holds the session (and the server) open.
                ready = await http.get("/health/ready")
                assert ready.status_code == 503
                assert ready.json()["type"] == "urn:chargeledger:problem:not-ready"
                metrics = (await http.get("/metrics")).text
                assert "chargeledger_draining 1.0" in metrics
            with pytest.raises(OSError):
                await websockets.connect(f"{server.url}/DR-2", open_timeout=5)
            assert not reader.done(), "the session waits for our CALL's answer"
            station.release.set()
            answer = await asking
            with pytest.raises(websockets.ConnectionClosed):
                await reader
            return answer, station._connection.close_code

        answer, code = asyncio.run(scenario())
        assert answer == {"configurationKey": []}, "the CALL in flight was answered"
        assert code == 1012
        server._thread.join(30)
        assert not server._thread.is_alive(), "the server stopped after the drain"
        assert csms.drain.report is not None
        assert (csms.drain.report.closed_idle, csms.drain.report.closed_busy) == (1, 0)
    finally:
        server.stop()

    events = _log(tmp_path / "d.db")
    (closed,) = [e for e in events if isinstance(e, SessionClosed)]
    assert (closed.code, closed.by, closed.reason) == (1012, "csms", "node draining: reconnect")
    answered = [e for e in events if isinstance(e, FrameLogged) and json.loads(e.text)[0] == 3][-1]
    assert events.index(answered) < events.index(closed), "answered, then closed"


def test_a_session_still_busy_after_the_drain_timeout_is_closed_anyway(tmp_path: Path) -> None:
    server = RunningServer(_settings(tmp_path / "d.db", drain_timeout=0.5)).start()
    try:
        csms = server.csms
        assert csms is not None

        async def scenario() -> BaseException | None:
            station, reader = await _connect(server, "DR-SILENT")
            asking = asyncio.create_task(
                server.arun(csms.call, "DR-SILENT", "GetConfiguration", {})
            )
            await eventually(
                lambda: csms.gateway.sessions["DR-SILENT"].in_flight is not None,
                what="our CALL in flight",
            )

            async def drain() -> bool:  # on the server's trio loop, as the API does it
                return csms.drain.request(1001)

            assert await server.arun(drain) is True
            # The station is stuck in its handler (it never answers): watch its socket.
            await station._connection.wait_closed()
            assert station._connection.close_code == 1001
            reader.cancel()
            try:
                await asking
            except StationOffline as exc:
                return exc
            return None

        error = asyncio.run(scenario())
        assert isinstance(error, StationOffline), "the caller learns the station left"
        server._thread.join(30)
        assert not server._thread.is_alive()
        assert csms.drain.report is not None and csms.drain.report.closed_busy == 1
    finally:
        server.stop()
    (closed,) = [e for e in _log(tmp_path / "d.db") if isinstance(e, SessionClosed)]
    assert (closed.code, closed.by) == (1001, "csms")
    assert closed.reason == "node draining: reconnect (still busy after 0.5 s)"


def test_a_call_being_recorded_when_the_drain_starts_is_waited_for(tmp_path: Path) -> None:
    """Our CALL taken from the queue while its frame waits for the store (here: another
    connection holds SQLite's write lock) is outstanding: the drain waits for it, the station
    answers once the frame is committed and sent, and only then is the session closed."""
    path = tmp_path / "d.db"
    server = RunningServer(_settings(path, drain_timeout=20)).start()
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        csms = server.csms
        assert csms is not None

        async def scenario() -> Any:
            station, reader = await _connect(server, "DR-LOCKED")
            station.release.set()  # answers at once
            lock.execute("BEGIN EXCLUSIVE")
            # The gateway's call: the one door would record the request first, and wait.
            asking = asyncio.create_task(
                server.arun(csms.gateway.call, "DR-LOCKED", "GetConfiguration", {})
            )
            await eventually(
                lambda: csms.gateway.sessions["DR-LOCKED"].in_flight is not None,
                what="our CALL taken from the queue, its frame waiting for the store",
            )

            async def drain() -> bool:
                return csms.drain.request()

            assert await server.arun(drain) is True
            await eventually(lambda: csms.gateway.draining, what="the drain started")
            assert not reader.done(), "not closed while our CALL is outstanding"
            lock.execute("ROLLBACK")
            answer = await asking
            await station._connection.wait_closed()
            assert station._connection.close_code == 1012
            reader.cancel()
            return answer

        assert asyncio.run(scenario()) == {"configurationKey": []}
        server._thread.join(30)
        assert csms.drain.report is not None and csms.drain.report.closed_idle == 1
    finally:
        lock.close()
        server.stop()
