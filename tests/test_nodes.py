"""Several nodes on one PostgreSQL schema (docs/cluster.md): fenced sessions, commands routed
through the database, dead nodes' sessions released while running.

Two nodes run in this test's trio run (``run_server`` twice, nodes ``A`` and ``B``, each on
its own port) on one fresh schema; a node killed with SIGKILL is a ``chargeledger serve``
subprocess. Stations are bare WebSockets (:class:`tests.test_ordering.RawStation`: every byte
the server sends is seen) where the test must see what is *not* sent, and the ``ocpp``
package's charge point (tests/test_e2e_v16.py's ``Station``) for a whole remote start.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import websockets
from ocpp.v16 import call
from psycopg import sql
from wsproto.events import CloseConnection

from chargeledger.core import nodes
from chargeledger.core.api import CentralSystem
from chargeledger.core.errors import CallError, StationOffline
from chargeledger.core.events import (
    CommandAnswered,
    CommandRequested,
    CommandRouted,
    Event,
    FrameLogged,
    Recorded,
    SessionClosed,
    SessionHeld,
    SessionOpened,
    command_stream,
    holder_stream,
    session_stream,
)
from chargeledger.core.server import run_server
from chargeledger.core.settings import Settings
from chargeledger.core.store import open_store
from chargeledger.projections import Views
from tests.harness import running_server
from tests.polling import eventually
from tests.test_e2e_v16 import START, Station
from tests.test_ordering import BOOT, HEARTBEAT, STEP, RawStation, frame, gate

pytestmark = pytest.mark.postgres

BEAT = 0.3
"""The nodes' heartbeat interval here: short, so that the waits on it are."""


def node_settings(url: str, node: str, **more: Any) -> Settings:
    return Settings(port=0, store=url, node=node, ping_interval=0, heartbeat_interval=BEAT, **more)


@asynccontextmanager
async def two_nodes(url: str, **more: Any) -> AsyncIterator[tuple[CentralSystem, CentralSystem]]:
    async with trio.open_nursery() as nursery:
        a: CentralSystem = await nursery.start(run_server, node_settings(url, "A", **more))
        b: CentralSystem = await nursery.start(run_server, node_settings(url, "B", **more))
        yield a, b
        nursery.cancel_scope.cancel()


async def booted(csms: CentralSystem, name: str) -> RawStation:
    station = await RawStation.connect(csms.port, name)
    assert (await station.call(BOOT))[2]["status"] == "Accepted"
    return station


async def log_of(csms: CentralSystem) -> list[Recorded]:
    return await trio.to_thread.run_sync(lambda: list(csms.store.iter_all()))


async def stream(csms: CentralSystem, name: str) -> list[Event]:
    pairs = await trio.to_thread.run_sync(csms.store.read_stream, name)
    return [event for _, event in pairs]


def opened_session(events: list[Recorded], station: str, node: str) -> str:
    (session,) = [
        r.event.session
        for r in events
        if isinstance(r.event, SessionOpened)
        and r.event.station == station
        and r.event.node == node
    ]
    return session


# -- fenced sessions ---------------------------------------------------------------------------


async def test_a_station_moving_to_b_fences_a_late_write_of_a(postgres_url: str) -> None:
    """A's commit of the station's Heartbeat is held (the writer seam) while the station
    reconnects to B; released, it meets B's close at that version: the database refuses it,
    A never answers, closes the connection, and nothing of the Heartbeat is in the log."""
    async with two_nodes(postgres_url) as (a, b):
        on_a = await booted(a, "CP-F")
        a.nodes.on_fenced = lambda session, reason: None  # type: ignore[union-attr]
        with gate(a, frame("in", 2)) as commit:
            await on_a.send(HEARTBEAT)
            with trio.fail_after(STEP):
                await commit.reached.wait()
            on_b = await booted(b, "CP-F")  # B takes the station over meanwhile
            commit.release()
            closed = await on_a.receive()  # no answer: the close
        assert isinstance(closed, CloseConnection), closed
        assert closed.code == 1008
        events = await log_of(a)
        old, new = opened_session(events, "CP-F", "A"), opened_session(events, "CP-F", "B")
        history = await stream(a, session_stream(old))
        assert isinstance(history[-1], SessionClosed)
        assert (history[-1].replaced_by, history[-1].by) == (new, "csms")
        assert "taken over by node 'B'" in history[-1].reason
        assert not any(isinstance(e, FrameLogged) and '"hb"' in e.text for e in history)
        assert sum(isinstance(e, SessionClosed) for e in history) == 1
        holders = await stream(a, holder_stream("CP-F"))
        assert [(h.node, h.session) for h in holders if isinstance(h, SessionHeld)] == [
            ("A", old),
            ("B", new),
        ]
        # The station goes on with B; A holds nothing any more.
        assert (await on_b.call(HEARTBEAT))[0] == 3
        assert a.connected == [] and b.connected == ["CP-F"]


START_TX = (
    '[2,"st","StartTransaction",{"connectorId":1,"idTag":"TAG-1","meterStart":0,'
    '"timestamp":"2026-12-01T10:00:00Z"}]'
)


async def test_a_start_repeated_on_b_while_a_commit_is_held_makes_one_transaction(
    postgres_url: str,
) -> None:
    """A holds the commit of a StartTransaction (and the id it allocated); the station
    gives up on A and repeats it on B, which answers it. A's late commit is refused: the
    log holds one transaction, the one whose id the station was given, and the station
    never heard of A's."""
    async with two_nodes(postgres_url) as (a, b):
        on_a = await booted(a, "CP-T")
        a.nodes.on_fenced = lambda session, reason: None  # type: ignore[union-attr]
        with gate(a, frame("in", 2)) as commit:
            await on_a.send(START_TX)
            with trio.fail_after(STEP):
                await commit.reached.wait()
            on_b = await booted(b, "CP-T")
            answer = await on_b.call(START_TX)
            commit.release()
            closed = await on_a.receive()
        assert isinstance(closed, CloseConnection) and closed.code == 1008
        given = answer[2]["transactionId"]
        assert answer[2]["idTagInfo"]["status"] == "Accepted"
        transactions = Views.replay(await log_of(a)).transactions
        assert [t.transaction_id for t in transactions.all()] == [given]
        starts = [
            r.event
            for r in await log_of(a)
            if isinstance(r.event, FrameLogged) and "StartTransaction" in r.event.text
        ]
        assert len(starts) == 1, "only B's StartTransaction is in the log"


async def test_a_start_a_killed_node_answered_but_never_delivered_keeps_its_id_on_b(
    postgres_url: str,
) -> None:
    """Node A committed a StartTransaction and its answer (transaction 7) and died before
    sending it (planted: A is not running). The station repeats the CALL, same message id, on
    B: B's takeover fences A's session and gives the station's retransmission window A's last
    answer, so the station gets transaction 7 again and the log holds one transaction. (B
    used to decide it afresh: a second id, the audit's duplicate_start; the chaos test.)"""
    session = "killed-a-session"
    at = time.time()
    opened = SessionOpened(station="CP-KS", session=session, at=at, protocol="ocpp1.6", node="A")
    answer = '[3,"st",{"transactionId":7,"idTagInfo":{"status":"Accepted"}}]'
    frames = [
        FrameLogged(station="CP-KS", session=session, at=at, direction=d, text=t)
        for d, t in (("in", START_TX), ("out", answer))
    ]
    held = SessionHeld(station="CP-KS", session=session, node="A", at=at)
    planted = open_store(postgres_url)
    try:
        stream = session_stream(session)
        planted.append(
            [(stream, 1, opened), (holder_stream("CP-KS"), 1, held)]
            + [(stream, version, f) for version, f in enumerate(frames, start=2)]
        )
    finally:
        planted.close()
    async with trio.open_nursery() as nursery:
        b: CentralSystem = await nursery.start(run_server, node_settings(postgres_url, "B"))
        station = await RawStation.connect(b.port, "CP-KS")
        again = await station.call(START_TX)
        assert again[2]["transactionId"] == 7, again
        events = await log_of(b)
        assert [t.transaction_id for t in Views.replay(events).transactions.all()] == [7]
        closes = [e for e in await stream_of(b, session) if isinstance(e, SessionClosed)]
        assert [c.replaced_by for c in closes] == [opened_session(events, "CP-KS", "B")]
        nursery.cancel_scope.cancel()


async def stream_of(csms: CentralSystem, session: str) -> list[Event]:
    return await stream(csms, session_stream(session))


async def test_a_learns_of_the_takeover_at_once_and_closes(postgres_url: str) -> None:
    """Without any write of its own, A is told (NOTIFY) and closes its connection 1008."""
    async with two_nodes(postgres_url) as (a, b):
        on_a = await booted(a, "CP-N")
        await booted(b, "CP-N")
        closed = await on_a.receive()
        assert isinstance(closed, CloseConnection) and closed.code == 1008
        await eventually(lambda: a.connected == [], what="A to drop the session")
        events = await log_of(a)
        old = opened_session(events, "CP-N", "A")
        closes = [e for e in await stream(a, session_stream(old)) if isinstance(e, SessionClosed)]
        assert len(closes) == 1 and "taken over" in closes[0].reason


async def test_two_nodes_taking_one_station_at_once_leave_one_holder(postgres_url: str) -> None:
    """Both connect the station at the same moment: each holder write is at the version it
    read, so they are serialised; the later one takes over from the earlier."""
    async with two_nodes(postgres_url) as (a, b):
        stations: list[RawStation] = []

        async def connect(csms: CentralSystem) -> None:
            stations.append(await RawStation.connect(csms.port, "CP-2X"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect, a)
            nursery.start_soon(connect, b)

        async def both_held() -> list[SessionHeld]:
            held = await stream(a, holder_stream("CP-2X"))
            return [h for h in held if isinstance(h, SessionHeld)] if len(held) == 2 else []

        holders = await eventually(both_held, what="both connections recorded")
        assert holders[1].replaces == holders[0].session
        first = await stream(a, session_stream(holders[0].session))
        assert isinstance(first[-1], SessionClosed), "the earlier holder is fenced"
        await eventually(
            lambda: sorted(a.connected + b.connected) == ["CP-2X"], what="one node to hold it"
        )


# -- commands routed through the database --------------------------------------------------------


def test_a_remote_start_asked_on_b_starts_a_transaction_on_a(postgres_url: str) -> None:
    with (
        running_server(node_settings(postgres_url, "A")) as a,
        running_server(node_settings(postgres_url, "B", api_port=0)) as b,
    ):
        assert a.csms is not None and b.csms is not None
        csms_b = b.csms

        async def scenario() -> tuple[Any, int, CallError]:
            ws = await websockets.connect(f"{a.url}/CP-R", subprotocols=["ocpp1.6"])
            station = Station("CP-R", ws)
            task = asyncio.create_task(station.start())
            try:
                await station.call(
                    call.BootNotification(charge_point_vendor="V", charge_point_model="M")
                )
                started = await b.arun(
                    partial(csms_b.remote_start, "CP-R", "TAG-1", connector_id=1)
                )
                answer = await station.call(call.StartTransaction(**START))
                try:
                    await b.arun(
                        partial(csms_b.call, "CP-R", "GetDiagnostics", {"location": "ftp://x/"})
                    )
                except CallError as exc:
                    error = exc
                else:
                    raise AssertionError("the station's CALLERROR did not reach B's caller")
                # B's HTTP API: the same door, the same answer.
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{csms_b.api_port}"
                ) as http:
                    cleared = await http.post("/api/stations/CP-R/calls/ClearCache", json={})
                assert cleared.status_code == 200 and cleared.json() == {"status": "Accepted"}
                http_ids.append(cleared.headers["X-Request-Id"])
                return started, answer.transaction_id, error
            finally:
                task.cancel()
                await ws.close()

        http_ids: list[str] = []
        started, transaction_id, error = asyncio.run(scenario())
        assert started.accepted and started.action == "RemoteStartTransaction"
        assert (error.code, error.station, error.action) == (
            "NotImplemented",
            "CP-R",
            "GetDiagnostics",
        )
        events = list(a.csms.store.iter_all())
        transactions = Views.replay(events).transactions
        assert [t.transaction_id for t in transactions.all()] == [transaction_id]
        # The routing is recorded: who asked, who sent, how it went.
        routed = [r.event for r in events if isinstance(r.event, CommandRouted)]
        assert [(r.by, r.to, r.command) for r in routed] == [
            ("B", "A", "remote_start"),
            ("B", "A", "GetDiagnostics"),
            ("B", "A", "ClearCache"),
        ]
        assert routed[-1].request_id == http_ids[0]
        for r in routed:
            kinds = [type(e) for _, e in a.csms.store.read_stream(command_stream(r.request_id))]
            assert kinds == [CommandRouted, CommandRequested, CommandAnswered]
        requested = [r.event for r in events if isinstance(r.event, CommandRequested)]
        assert {q.node for q in requested} == {"A"}


async def test_an_unknown_or_gone_station_is_offline_at_once(postgres_url: str) -> None:
    async with two_nodes(postgres_url) as (a, b):
        started = time.monotonic()
        with pytest.raises(StationOffline, match="not connected to any node"):
            await b.reset("NOWHERE", "Hard")
        on_a = await booted(a, "CP-G")
        await on_a.stream.aclose()  # gone without a close
        await eventually(lambda: a.connected == [], what="A to see the station gone")
        # Asked while A records the close, or after: offline either way, nothing sent.
        with pytest.raises(StationOffline, match="not connected to any node"):
            await b.call("CP-G", "ClearCache", {})
        assert time.monotonic() - started < 5
        routed = [r.event for r in await log_of(b) if isinstance(r.event, CommandRouted)]
        assert all(r.station == "CP-G" for r in routed), "nothing routed for NOWHERE"
        sent = [
            r
            for r in await log_of(b)
            if isinstance(r.event, FrameLogged) and "ClearCache" in r.event.text
        ]
        assert not sent


async def test_a_command_nobody_takes_is_answered_offline_and_never_sent(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A does not take B's command (its notification lost): after two heartbeat intervals B
    records the command answered ``StationOffline`` at the version A's take would have; A
    taking it later conflicts there and sends nothing."""
    async with two_nodes(postgres_url) as (a, b):
        station = await booted(a, "CP-L")
        assert a.nodes is not None
        late: list[str] = []

        async def lost(request_id: str, serve: object) -> None:
            late.append(request_id)

        monkeypatch.setattr(a.nodes, "_take", lost)
        started = time.monotonic()
        with pytest.raises(StationOffline, match="did not take the command within"):
            await b.call("CP-L", "ClearCache", {})
        assert time.monotonic() - started < 2 * BEAT + 2
        (request_id,) = late
        (routed, answered) = await stream(a, command_stream(request_id))
        assert isinstance(routed, CommandRouted) and isinstance(answered, CommandAnswered)
        assert (answered.node, answered.error) == ("B", "StationOffline")
        assert await a.serve_routed(routed) is None, "taken too late: not sent"
        await station.assert_silent()
        assert len(await stream(a, command_stream(request_id))) == 2


async def test_one_outstanding_call_per_station_across_nodes(postgres_url: str) -> None:
    """A CALL asked on A and one asked on B for a station on A: the station gets the second
    only once it answered the first (only the holder sends, one at a time)."""
    async with two_nodes(postgres_url) as (a, b):
        station = await booted(a, "CP-1C")
        results: list[Any] = []

        async def ask(csms: CentralSystem, action: str) -> None:
            results.append((action, await csms.call("CP-1C", action, {})))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, a, "ClearCache")
            nursery.start_soon(ask, b, "GetLocalListVersion")
            first = await station.receive()
            assert isinstance(first, str)
            session = a.gateway.sessions["CP-1C"]
            await eventually(
                lambda: session.outbound_receive.statistics().current_buffer_used == 1,
                what="the other CALL (local or routed) to be queued behind the first",
            )
            await station.assert_silent()
            _, message_id, action, _ = json.loads(first)
            answer = {"status": "Accepted"} if action == "ClearCache" else {"listVersion": 1}
            await station.send(json.dumps([3, message_id, answer]))
            second = await station.receive()
            assert isinstance(second, str)
            _, second_id, second_action, _ = json.loads(second)
            assert {action, second_action} == {"ClearCache", "GetLocalListVersion"}
            answer = {"status": "Accepted"} if second_action == "ClearCache" else {"listVersion": 1}
            await station.send(json.dumps([3, second_id, answer]))
        assert sorted(results, key=str) == [
            ("ClearCache", {"status": "Accepted"}),
            ("GetLocalListVersion", {"listVersion": 1}),
        ]


# -- a node killed ---------------------------------------------------------------------------


def _serve_node(tmp_path: Path, url: str, node: str) -> tuple[subprocess.Popen[str], int]:
    config = tmp_path / f"{node}.toml"
    config.write_text(f"heartbeat_interval = {BEAT}\nping_interval = 0\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chargeledger.core.cli",
            "serve",
            "--port",
            "0",
            "--store",
            url,
            "--node",
            node,
            "--config",
            str(config),
        ],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHARGELEDGER_")},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "listening on ws://" in line:
            port = int(line.split("listening on ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            return process, port
    raise AssertionError(f"node {node} did not start")


KILLED_TIMEOUT = 5.0
"""``node_timeout`` of the nodes outliving a killed one."""


async def test_a_killed_node_has_its_sessions_released_by_b(
    postgres_url: str, tmp_path: Path
) -> None:
    process, port = await trio.to_thread.run_sync(_serve_node, tmp_path, postgres_url, "A")
    try:
        station = await RawStation.connect(port, "CP-K")
        assert (await station.call(BOOT))[2]["status"] == "Accepted"
        async with trio.open_nursery() as nursery:
            b: CentralSystem = await nursery.start(
                run_server, node_settings(postgres_url, "B", node_timeout=KILLED_TIMEOUT)
            )
            # A second releaser, racing B: the session's version makes one of them record it.
            await nursery.start(
                run_server, node_settings(postgres_url, "C", node_timeout=KILLED_TIMEOUT)
            )
            # A is alive: a command from B reaches the station through A.
            async with trio.open_nursery() as asking:
                asking.start_soon(b.call, "CP-K", "ClearCache", {})
                sent = await station.receive()
                assert isinstance(sent, str)
                await station.send(json.dumps([3, json.loads(sent)[1], {"status": "Accepted"}]))
            process.send_signal(signal.SIGKILL)
            await trio.to_thread.run_sync(process.wait)
            killed = time.monotonic()
            events = await log_of(b)
            session = opened_session(events, "CP-K", "A")
            # Silent for three beats, not yet released: a command fails at once all the same.
            assert b.nodes is not None
            cluster = b.nodes

            async def silent() -> bool:
                age = await trio.to_thread.run_sync(cluster.heartbeat_age, "A")
                return age is not None and age > 3 * BEAT

            await eventually(silent, what="A's heartbeat to go stale")
            asked = time.monotonic()
            with pytest.raises(
                StationOffline, match="connected to node 'A', which sent a heartbeat not"
            ):
                await b.call("CP-K", "ClearCache", {})
            assert time.monotonic() - asked < 1
            assert time.monotonic() - killed < KILLED_TIMEOUT, "asked before the release"

            async def released() -> SessionClosed | None:
                last = (await stream(b, session_stream(session)))[-1]
                return last if isinstance(last, SessionClosed) else None

            closed = await eventually(released, what="B or C to release A's session")
            assert "presumed dead, released by node" in closed.reason
            started = time.monotonic()
            with pytest.raises(StationOffline):
                await b.call("CP-K", "ClearCache", {})
            assert time.monotonic() - started < 1
            assert await cluster.release_dead_nodes() == 0, "released once"
            history = await stream(b, session_stream(session))
            assert sum(isinstance(e, SessionClosed) for e in history) == 1
            nursery.cancel_scope.cancel()
    finally:
        process.kill()
        process.wait()


async def test_a_command_whose_holder_restarted_after_taking_it_is_answered_offline_once(
    postgres_url: str,
) -> None:
    """A takes B's command and sends it, then restarts before answering (its heartbeat row
    shows a new start; a restart within three heartbeats is not a stale heartbeat): B records
    the command answered ``StationOffline`` after the take, once, and raises it; the answer A
    would record afterwards conflicts there, so the command has exactly one answer."""
    async with two_nodes(postgres_url) as (a, b):
        station = await booted(a, "CP-R")
        assert a.nodes is not None
        told: list[str] = []

        async def ask() -> None:
            with pytest.raises(StationOffline, match="restarted before answering") as raised:
                await b.call("CP-R", "ClearCache", {})
            told.append(str(raised.value))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            sent = await station.receive()
            assert isinstance(sent, str)
            restarted = sql.SQL("UPDATE {}.{} SET started = started + 1 WHERE node = %s")
            await trio.to_thread.run_sync(
                a.nodes._execute,
                restarted.format(sql.Identifier(a.nodes.schema), sql.Identifier(nodes._NODES)),
                ("A",),
            )
            await eventually(lambda: bool(told), what="B to tell its caller")
            _, message_id, _, _ = json.loads(sent)
            await station.send(json.dumps([3, message_id, {"status": "Accepted"}]))
        log = await trio.to_thread.run_sync(a.store.read, 0, 100_000)
        (routed,) = [r for r in log if isinstance(r.event, CommandRouted)]
        events = await stream(a, routed.stream)
        assert [type(e).__name__ for e in events] == [
            "CommandRouted",
            "CommandRequested",
            "CommandAnswered",
        ]
        assert isinstance(events[2], CommandAnswered)
        assert (events[2].node, events[2].error) == ("B", "StationOffline")
