"""Chaos on several nodes (docs/cluster.md): three ``chargeledger serve`` processes and a
``chargeledger worker`` on one PostgreSQL schema, ``ocpp`` charge points (1.6 and 2.0.1)
hopping between the nodes at random, sometimes while their old session is still open (a
takeover), running transactions, while one node is killed with SIGKILL and restarted and
commands are asked on random nodes for random stations. Afterwards the log is checked:
``chargeledger audit`` finds no duplicate transaction and no session held twice, every CALL a
station had answered and every CALL it received is in the log, every routed command is
answered exactly once, ``chargeledger verify`` passes.

The randomness is seeded (``CHAOS_SEED``, printed): a failure reproduces with the same seed,
as far as the machine's timing allows. Also here: ``session_held_twice`` found in a planted
log.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from chargeledger.core.events import (
    FrameLogged,
    SessionClosed,
    SessionOpened,
    session_stream,
)
from chargeledger.core.store import open_store
from tests.harness import chargeledger_cli
from tests.test_haproxy import Node, _start_node, _stop

__all__: list[str] = []

# -- session_held_twice in a planted log -----------------------------------------------------


def _opened(session: str, node: str) -> SessionOpened:
    return SessionOpened(station="CP-X", session=session, at=1.0, protocol="ocpp1.6", node=node)


def _frame(session: str, message_id: str) -> FrameLogged:
    text = json.dumps([2, message_id, "Heartbeat", {}])
    return FrameLogged(station="CP-X", session=session, at=2.0, direction="in", text=text)


def _audit_held_twice(url: str) -> list[dict[str, Any]]:
    return chargeledger_cli("audit", "--kind", "session_held_twice", store=url)


def test_a_session_held_twice_is_an_audit_finding_with_its_evidence(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'planted.db'}"
    store = open_store(url)
    a, b = session_stream("s-a"), session_stream("s-b")
    try:
        store.append([(a, 1, _opened("s-a", "A")), (a, 2, _frame("s-a", "a1"))])
        # B takes the station over without fencing A's session: both go on recording.
        store.append([(b, 1, _opened("s-b", "B")), (b, 2, _frame("s-b", "b1"))])
        store.append([(a, 3, _frame("s-a", "a2"))])
        store.append([(a, 4, _frame("s-a", "a3")), (b, 3, _frame("s-b", "b2"))])
        # Fenced, as the nodes do it: C's opening closes B's session; nothing more is found.
        c = session_stream("s-c")
        closed = SessionClosed(
            station="CP-X", session="s-b", at=3.0, code=1008, by="csms", replaced_by="s-c"
        )
        store.append([(c, 1, _opened("s-c", "C")), (b, 4, closed), (c, 2, _frame("s-c", "c1"))])
        # One node replacing its own session records its old session's close itself, later.
        d = session_stream("s-d")
        store.append([(d, 1, _opened("s-d", "C")), (c, 3, _frame("s-c", "c2"))])
    finally:
        store.close()
    (finding,) = _audit_held_twice(url)
    assert finding["severity"] == "error" and finding["station"] == "CP-X"
    assert finding["positions"] == [1, 3, 5], "A's opening, B's opening, A's frame after it"
    assert "session s-a of node 'A' recorded a frame after node 'B'" in finding["detail"]
    assert [e["event"].get("text") for e in finding["evidence"]][-1] == (
        '[2, "a2", "Heartbeat", {}]'
    )


# -- the chaos run ---------------------------------------------------------------------------

# A fixed seed by default, so that CI runs the same hops every time (timing still varies):
# 20692 found a routed command left without an answer (docs/testing.md). Explore others with
# CHAOS_SEED=$RANDOM.
SEED = int(os.environ.get("CHAOS_SEED", "20692"))
NODES = ("A", "B", "C")
KILLED = "B"
STATIONS_16 = 3
STATIONS_201 = 3
RUN_SECONDS = 22.0
"""How long the stations hop; the whole test (start, kill, restart, checks) stays well
under a minute."""
BEAT = 0.5
NODE_TIMEOUT = 3.0


def _utc_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Fleet:
    """What the stations and the askers saw, to hold the log against."""

    nodes: dict[str, Node]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    answered: dict[str, list[str]] = field(default_factory=dict)
    """Per station, the message ids of its CALLs that we answered."""
    received: dict[str, list[str]] = field(default_factory=dict)
    """Per station, the message ids of our CALLs it received."""
    transaction_ids: list[int] = field(default_factory=list)
    """1.6 transaction ids the stations were given."""
    asked: list[tuple[str, str, int, str]] = field(default_factory=list)
    """Commands asked: (node, station, HTTP status, request id)."""
    takeovers: int = 0
    late_answered: int = 0
    """Heartbeats sent on an old connection after the takeover that were answered."""
    hops: int = 0

    def live(self) -> list[str]:
        return [name for name, node in self.nodes.items() if node.process.poll() is None]


class Station16(ChargePoint16):
    received: list[str]

    @on(Action16.clear_cache)
    def on_clear_cache(self, **_: Any) -> result16.ClearCache:
        return result16.ClearCache(status="Accepted")

    async def route_message(self, raw_msg: str) -> Any:
        message = json.loads(raw_msg)
        if message[0] == 2:
            self.received.append(message[1])
        return await super().route_message(raw_msg)


class Station201(ChargePoint201):
    received: list[str]

    @on(Action201.clear_cache)
    def on_clear_cache(self, **_: Any) -> result201.ClearCache:
        return result201.ClearCache(status="Accepted")

    async def route_message(self, raw_msg: str) -> Any:
        message = json.loads(raw_msg)
        if message[0] == 2:
            self.received.append(message[1])
        return await super().route_message(raw_msg)


class Gone(Exception):
    """The station's connection ended before its CALL was answered."""


class Connection:
    """One WebSocket session of a station to one node."""

    def __init__(self, name: str, protocol: str, fleet: Fleet) -> None:
        self.name, self.protocol, self.fleet = name, protocol, fleet
        self.count = 0
        self.ws: Any = None
        self.reader: asyncio.Task[Any] | None = None
        self.cp: Any = None

    async def open(self, node: str) -> None:
        port = self.fleet.nodes[node].port
        self.ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ocpp/{self.name}",
            subprotocols=[websockets.Subprotocol(self.protocol)],
            open_timeout=5,
            ping_interval=None,
        )
        kind = Station16 if self.protocol == "ocpp1.6" else Station201
        self.cp = kind(self.name, self.ws, response_timeout=5)
        self.cp.received = self.fleet.received.setdefault(self.name, [])
        self.reader = asyncio.create_task(self.cp.start())

    async def ask(self, payload: Any, unique_id: str) -> Any:
        assert self.reader is not None
        asking = asyncio.create_task(self.cp.call(payload, unique_id=unique_id, suppress=False))
        await asyncio.wait({asking, self.reader}, return_when=asyncio.FIRST_COMPLETED)
        if not asking.done() or asking.exception() is not None:
            asking.cancel()
            with suppress(BaseException):
                await asking
            raise Gone(unique_id)
        self.fleet.answered.setdefault(self.name, []).append(unique_id)
        return asking.result()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with suppress(BaseException):
                await self.reader
        if self.ws is not None:
            with suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)


async def _station(name: str, protocol: str, fleet: Fleet, seed: int) -> None:
    """A station's life: connect to a random node, boot, run transactions, hop to another
    node now and then (sometimes opening the new connection before closing the old one)."""
    rng = random.Random(seed)
    numbers = iter(range(1, 1_000_000))
    if protocol == "ocpp1.6":
        boot: Any = call16.BootNotification(charge_point_vendor="V", charge_point_model="M")
    else:
        boot = call201.BootNotification(
            charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
        )
    # What the station must still tell, with its message id (repeated under the same id, on
    # whatever node it reaches next); it boots once, as a station does after a reboot only.
    pending: list[tuple[Any, str]] = [(boot, f"{name}-{next(numbers)}")]
    state = Charging()
    conn: Connection | None = None
    while not fleet.stop.is_set():
        live = fleet.live()
        if not live:
            await asyncio.sleep(0.1)
            continue
        node = rng.choice(live)
        fresh = Connection(name, protocol, fleet)
        try:
            await fresh.open(node)
        except (OSError, websockets.WebSocketException, TimeoutError):
            await asyncio.sleep(0.2)
            continue
        if conn is not None:  # a takeover: the old session is still open
            fleet.takeovers += 1
            old = conn
            late = f"{name}-{next(numbers)}" if rng.random() < 0.5 else None
            _close_soon(old, late, rng.uniform(0, 0.3))
        conn = fresh
        fleet.hops += 1
        try:
            for _ in range(rng.randint(2, 8)):
                if fleet.stop.is_set():
                    break
                await _tell(conn, pending, state)  # repeated until answered, on whatever node
                state.meter += rng.randint(10, 500)
                pending.append((_next_call(protocol, state, rng, name), f"{name}-{next(numbers)}"))
                await _tell(conn, pending, state)
                await asyncio.sleep(rng.uniform(0.02, 0.15))
        except Gone:
            await conn.close()
            conn = None
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            continue
        if rng.random() < 0.5:  # a clean hop: close first; otherwise a takeover next round
            await conn.close()
            conn = None
    if conn is not None:
        await conn.close()


@dataclass
class Charging:
    transaction: int | str | None = None
    """The transaction running (``"starting"`` while a 1.6 start is not answered)."""
    seq: int = 0
    meter: int = 0
    started: int = 0


async def _tell(conn: Connection, pending: list[tuple[Any, str]], state: Charging) -> None:
    fleet = conn.fleet
    while pending:
        payload, unique_id = pending[0]
        answer = await conn.ask(payload, unique_id)
        if isinstance(payload, call16.StartTransaction):
            state.transaction = answer.transaction_id
            fleet.transaction_ids.append(answer.transaction_id)
        pending.pop(0)


def _next_call(protocol: str, state: Charging, rng: random.Random, name: str) -> Any:
    """The station's next transaction message: a start, meter values or a stop."""
    meter = state.meter
    if state.transaction is None:
        state.started += 1
        if protocol == "ocpp1.6":
            state.transaction = "starting"
            return call16.StartTransaction(
                connector_id=1, id_tag="TAG", meter_start=meter, timestamp=_utc_now()
            )
        state.transaction, state.seq = f"{name}-tx-{state.started}", 0
        return _event201("Started", state.transaction, 0, meter)
    if state.transaction == "starting":  # not answered yet: cannot happen after _tell
        raise AssertionError("a start not answered")
    state.seq += 1
    if rng.random() < 0.3:
        transaction, state.transaction = state.transaction, None
        if protocol == "ocpp1.6":
            assert isinstance(transaction, int)
            return call16.StopTransaction(
                meter_stop=meter, timestamp=_utc_now(), transaction_id=transaction
            )
        return _event201("Ended", str(transaction), state.seq, meter)
    if protocol == "ocpp1.6":
        value = {"timestamp": _utc_now(), "sampledValue": [{"value": str(meter)}]}
        return call16.MeterValues(
            connector_id=1, transaction_id=state.transaction, meter_value=[value]
        )
    return _event201("Updated", str(state.transaction), state.seq, meter)


CLOSING: set[asyncio.Task[None]] = set()


def _close_soon(conn: Connection, late: str | None, after: float) -> None:
    """Close the old connection of a station that took it over on another node, after
    ``after`` seconds; first, when ``late`` names a message id, send a Heartbeat on it (a
    frame in flight on a half-open connection): the fence must refuse it."""

    async def close() -> None:
        if late is not None:
            heartbeat = call16.Heartbeat() if conn.protocol == "ocpp1.6" else call201.Heartbeat()
            with suppress(Gone):
                await conn.ask(heartbeat, late)
                conn.fleet.late_answered += 1
        await asyncio.sleep(after)
        await conn.close()

    task = asyncio.ensure_future(close())
    CLOSING.add(task)
    task.add_done_callback(CLOSING.discard)


def _event201(kind: str, transaction: str, seq: int, meter: int) -> call201.TransactionEvent:
    reason = {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "StopAuthorized"}
    value = {"timestamp": _utc_now(), "sampled_value": [{"value": meter}]}
    return call201.TransactionEvent(
        event_type=kind,
        timestamp=_utc_now(),
        trigger_reason=reason[kind],
        seq_no=seq,
        transaction_info={"transaction_id": transaction},
        evse={"id": 1, "connector_id": 1},
        meter_value=[value],
    )


async def _asker(fleet: Fleet, names: list[str], seed: int) -> None:
    """Commands asked on random nodes for random stations (ClearCache, through the HTTP API)."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=30) as http:
        while not fleet.stop.is_set():
            live = fleet.live()
            node, station = rng.choice(live), rng.choice(names)
            api = fleet.nodes[node].api
            with suppress(httpx.HTTPError):
                answer = await http.post(f"{api}/api/stations/{station}/calls/ClearCache", json={})
                fleet.asked.append(
                    (node, station, answer.status_code, answer.headers.get("X-Request-Id", ""))
                )
            await asyncio.sleep(rng.uniform(0.05, 0.3))


def _start(store: str, name: str, tmp_path: Path) -> Node:
    config = tmp_path / "node.toml"
    config.write_text(
        f"heartbeat_interval = {BEAT}\nnode_timeout = {NODE_TIMEOUT}\nping_interval = 0\n"
    )
    return _start_node(store, name, config)


def _start_worker(store: str, config: Path) -> subprocess.Popen[str]:
    log = (config.parent / "worker.log").open("w")
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "chargeledger.core.cli", "worker", "--store", store),
            *("--config", str(config), "--node", "W"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )


def held_twice(events: list[dict[str, Any]]) -> list[str]:
    """The log checked by hand, independently of the audit: a frame recorded on a session while
    a session of the same station opened after it on another node is open."""
    open_: dict[str, dict[str, tuple[str, int]]] = {}
    found = []
    for e in events:
        kind, event = e["kind"], e["event"]
        if kind == "SessionOpened":
            open_.setdefault(event["station"], {})[event["session"]] = (
                event["node"],
                e["position"],
            )
        elif kind == "SessionClosed":
            open_.get(event["station"], {}).pop(event["session"], None)
        elif kind == "FrameLogged":
            sessions = open_.get(event["station"], {})
            mine = sessions.get(event["session"])
            if mine is not None and any(
                node != mine[0] and at > mine[1] for s, (node, at) in sessions.items()
            ):
                found.append(f"{event['station']} {event['session']} at {e['position']}")
    return found


@pytest.mark.postgres
def test_stations_hopping_between_nodes_while_one_is_killed_lose_and_double_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    print(f"CHAOS_SEED={SEED}")
    started = time.monotonic()
    rng = random.Random(SEED)
    names = [f"C16-{n}" for n in range(STATIONS_16)] + [f"C201-{n}" for n in range(STATIONS_201)]
    protocols = {n: "ocpp1.6" if n.startswith("C16") else "ocpp2.0.1" for n in names}
    with ExitStack() as stack:
        nodes = {name: _start(postgres_url, name, tmp_path) for name in NODES}
        for node in nodes.values():
            stack.callback(lambda node=node: _stop(node.process))
        worker = _start_worker(postgres_url, tmp_path / "node.toml")
        stack.callback(_stop, worker)
        fleet = Fleet(nodes)
        killed_at = rng.uniform(0.25, 0.4) * RUN_SECONDS
        down_for = rng.uniform(2.0, 4.0)

        async def chaos() -> None:
            tasks = [
                asyncio.create_task(_station(n, protocols[n], fleet, rng.randrange(1 << 30)))
                for n in names
            ]
            tasks += [asyncio.create_task(_asker(fleet, names, rng.randrange(1 << 30)))]
            try:
                await asyncio.sleep(killed_at)
                nodes[KILLED].process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(nodes[KILLED].process.wait, 10)
                await asyncio.sleep(down_for)
                restarted = await asyncio.to_thread(_start, postgres_url, KILLED, tmp_path)
                nodes[KILLED] = restarted
                stack.callback(_stop, restarted.process)
                await asyncio.sleep(max(0.0, RUN_SECONDS - killed_at - down_for))
            finally:
                fleet.stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 20)

        asyncio.run(chaos())
        for node in nodes.values():  # SIGTERM: drain, record the closes, exit
            node.process.send_signal(signal.SIGTERM)
        for node in nodes.values():
            node.process.wait(timeout=20)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    print(
        f"CHAOS_SEED={SEED}: {fleet.hops} connections, {fleet.takeovers} takeovers, "
        f"{sum(map(len, fleet.answered.values()))} CALLs answered, "
        f"{len(fleet.asked)} commands asked "
        f"({dict(Counter(status for _, _, status, _ in fleet.asked))}), "
        f"{fleet.late_answered} late frames answered, {time.monotonic() - started:.1f} s"
    )
    assert fleet.takeovers > 0 and fleet.hops > len(names), "the stations did hop"

    events = chargeledger_cli("events", store=postgres_url)
    frames = [e["event"] for e in events if e["kind"] == "FrameLogged"]
    texts = [(f["station"], f["direction"], json.loads(f["text"])) for f in frames if f["text"]]
    # Every CALL the stations had answered is in the log with its answer; every CALL of ours
    # they received was recorded before it was sent.
    calls_in = {(s, t[1]) for s, d, t in texts if d == "in" and t[0] == 2}
    results_out = {(s, t[1]) for s, d, t in texts if d == "out" and t[0] in (3, 4)}
    answered = {(s, m) for s, ids in fleet.answered.items() for m in ids}
    assert answered <= calls_in, f"lost CALLs (seed {SEED}): {sorted(answered - calls_in)}"
    assert answered <= results_out, f"answers not logged (seed {SEED})"
    calls_out = {(s, t[1]) for s, d, t in texts if d == "out" and t[0] == 2}
    received = {(s, m) for s, ids in fleet.received.items() for m in ids}
    assert received <= calls_out, f"CALLs sent unrecorded (seed {SEED}): {received - calls_out}"
    # 1.6 transaction ids unique; the audit finds no doubled start, no session held twice.
    assert len(set(fleet.transaction_ids)) == len(fleet.transaction_ids), SEED
    findings = chargeledger_cli("audit", store=postgres_url)
    kinds = Counter(f["kind"] for f in findings)
    bad = {"duplicate_start", "transaction_id_reused", "session_held_twice"}
    assert not bad & set(kinds), f"seed {SEED}: {kinds}"
    assert not held_twice(events), f"sessions held twice (seed {SEED}): {held_twice(events)}"
    issued = [f for f in findings if f["kind"] == "transaction_issued"]
    given = {str(t) for t in fleet.transaction_ids}
    assert given <= {str(t) for f in issued for t in f["transaction_ids"]}
    # Every routed command answered exactly once, and every command answered 200 was routed or
    # local and received by its station.
    routed = [e["event"] for e in events if e["kind"] == "CommandRouted"]
    answers = Counter(e["event"]["request_id"] for e in events if e["kind"] == "CommandAnswered")
    assert routed, "some commands were routed"
    for command in routed:
        assert answers[command["request_id"]] == 1, (SEED, command)
    assert all(count == 1 for count in answers.values()), SEED
    assert any(status == 200 for _, _, status, _ in fleet.asked)
    # A command answered 200 was taken (CommandRequested) once, by the node holding the
    # station, and its ClearCache reached the station.
    requested = Counter(e["event"]["request_id"] for e in events if e["kind"] == "CommandRequested")
    for node, station, status, request_id in fleet.asked:
        if status == 200:
            assert requested[request_id] == 1, (SEED, node, station, request_id)
    accepted = {"status": "Accepted"}
    cleared = sum(1 for _, d, t in texts if d == "in" and t[0] == 3 and t[2] == accepted)
    assert cleared >= sum(1 for _, _, status, _ in fleet.asked if status == 200), SEED
    assert (
        subprocess.run(
            [sys.executable, "-m", "chargeledger.core.cli", "verify", "--store", postgres_url],
            capture_output=True,
            timeout=60,
        ).returncode
        == 0
    ), "verify"
    assert time.monotonic() - started < 60, "bounded: a minute at most"
