"""Nothing durable is traded for speed: ``chargeledger serve`` killed with SIGKILL at saturation
has every call it acknowledged in its store, on SQLite and on PostgreSQL.

A real server process on loopback, ``STATIONS`` stations on raw WebSockets each keeping one
MeterValues CALL in flight back to back (the benchmark's saturation scenario). Every
CALLRESULT a station receives is recorded with the CALL it answers. Once ``ACKNOWLEDGED``
MeterValues were answered, the test takes the store's write lock (as a slow disk or a busy
database would hold the writer up) and waits until the group-commit writer is stuck in the
middle of a commit and every station has a CALL in flight; then it kills the server with
SIGKILL (no handler runs, nothing is flushed or closed) and lets go of the lock. The store
must then hold, for every acknowledged call, the CALL as the station sent it and the
CALLRESULT as the station received it (the same texts), and its hash chains must verify.

Why the lock: without it, whether the kill finds a batch half-written is up to timing (a
PostgreSQL COMMIT already on the wire completes after its client dies), and a server that
answers before committing was caught in 2 of 5 runs on PostgreSQL; and waiting only until
every station has a CALL in flight is not enough either (right after the lock is granted the
stations of the last commit are all waiting for answers not yet sent), which let that server
pass 6 runs of 10 on SQLite. With the writer seen stuck, that server has
answered the frames of the stuck batch, which die with it: caught every time
(docs/testing.md, the planted bugs).

SIGKILL loses what the process had not yet handed to the database; what it had written
(SQLite's WAL in the page cache, a PostgreSQL commit) survives. So the test proves "committed
before answered", not the fsync (``synchronous=FULL``), which only a power cut would test.
"""

from __future__ import annotations

import asyncio
import json
import platform
import signal
import sqlite3
import subprocess
import threading
from contextlib import suppress
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import websockets
from psycopg import sql

from chargeledger.core.events import FrameLogged
from chargeledger.core.store import open_store
from tests.conftest import on_sqlite_and_postgres
from tests.harness import chargeledger_cli, serve_process
from tests.polling import eventually

STATIONS = 40
ACKNOWLEDGED = 1500
"""MeterValues answered before the kill: a second or two of saturation on a busy machine."""

_BOOT = '[2,"%s","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
_START = (
    '[2,"%s","StartTransaction",{"connectorId":1,"idTag":"KILL9",'
    '"meterStart":0,"timestamp":"2026-01-01T00:00:00Z"}]'
)
_METER_VALUES = (
    '[2,"%s","MeterValues",{"connectorId":1,"transactionId":%d,"meterValue":[{"timestamp":'
    '"2026-01-01T00:00:00Z","sampledValue":[{"value":"%d","measurand":'
    '"Energy.Active.Import.Register","unit":"Wh"}]}]}]'
)


class Load:
    """What the stations sent and had answered, shared by their tasks."""

    def __init__(self) -> None:
        self.acknowledged: list[tuple[str, str, str]] = []
        """(station, CALL text, CALLRESULT text), in the order the answers arrived."""
        self.meter_values = 0
        self.in_flight: set[str] = set()
        """Stations waiting for an answer right now."""


async def _call(ws: websockets.ClientConnection, station: str, text: str, load: Load) -> object:
    """Send the CALL ``text``, return the CALLRESULT's payload and record the exchange;
    ``websockets.ConnectionClosed`` when the server is gone."""
    load.in_flight.add(station)
    await ws.send(text)
    answer = await ws.recv()
    load.in_flight.discard(station)
    assert isinstance(answer, str)
    frame = json.loads(answer)
    assert frame[0] == 3 and frame[1] == json.loads(text)[1], f"{station}: {answer}"
    load.acknowledged.append((station, text, answer))
    return frame[2]


async def _station(port: int, station: str, load: Load) -> None:
    """Boot, start a transaction, then MeterValues back to back until the server dies."""
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/ocpp/{station}",
        subprotocols=[websockets.Subprotocol("ocpp1.6")],
        ping_interval=None,
    )
    try:
        await _call(ws, station, _BOOT % f"{station}-boot", load)
        started = await _call(ws, station, _START % f"{station}-start", load)
        transaction = started["transactionId"]  # type: ignore[index]
        n = 0
        while True:
            n += 1
            await _call(ws, station, _METER_VALUES % (f"{station}-mv{n}", transaction, n), load)
            load.meter_values += 1
    except websockets.ConnectionClosed:
        return
    finally:
        await ws.close()


_SLEEP_SYSCALLS = {"x86_64": {"35", "230"}, "aarch64": {"101", "115"}}
"""nanosleep and clock_nanosleep: how SQLite's busy handler waits for a lock."""


class StoreLock:
    """The store's write lock, held from the test: SQLite's (``BEGIN IMMEDIATE`` on the file),
    or PostgreSQL's on the events table (``LOCK TABLE ... IN EXCLUSIVE MODE``, the lock
    eventsourcing's insert takes). Held for a few seconds at most: the server's writer gives
    up after 5 (``lock_timeout``)."""

    TABLE = "stored_events"

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith("postgresql")
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: psycopg.Connection[tuple[object, ...]] | None = None

    def _server(self) -> str:
        return urlsplit(self.url)._replace(query="").geturl()

    def _schema(self) -> str:
        return parse_qs(urlsplit(self.url).query)["schema"][-1]

    def hold(self) -> None:
        """Take the lock (waiting for a commit in progress to end)."""
        if self.postgres:
            self._postgres = psycopg.connect(self._server(), user="postgres")
            self._postgres.execute(
                sql.SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
                    sql.Identifier(self._schema()), sql.Identifier(self.TABLE)
                )
            )
        else:
            path = self.url.removeprefix("sqlite:///")
            self._sqlite = sqlite3.connect(
                path, timeout=10, isolation_level=None, check_same_thread=False
            )
            self._sqlite.execute("BEGIN IMMEDIATE")

    def writer_waits(self, pid: int) -> bool:
        """Whether the writer of the server ``pid`` is waiting for the lock: a waiting lock in
        ``pg_locks`` on PostgreSQL; on SQLite, which lists no waiters, a thread of the server
        in SQLite's busy handler, which sleeps between attempts (``/proc/PID/task/*/syscall``;
        no other thread of the server sleeps that way: trio waits in ``epoll_wait``, idle
        threads on futexes)."""
        if not self.postgres:
            sleeps = _SLEEP_SYSCALLS.get(platform.machine())
            assert sleeps is not None, f"the sleep syscalls of {platform.machine()} are unknown"
            for task in Path(f"/proc/{pid}/task").iterdir():
                with suppress(OSError):
                    if (task / "syscall").read_text().split()[0] in sleeps:
                        return True
            return False
        query = (
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
            "(quote_ident(%s) || '.' || quote_ident(%s))::regclass"
        )
        with psycopg.connect(self._server(), user="postgres") as conn:
            row = conn.execute(query, (self._schema(), self.TABLE)).fetchone()
        return row is not None and int(str(row[0])) > 0

    def release(self) -> None:
        for conn in (self._sqlite, self._postgres):
            if conn is not None:
                conn.rollback()
                conn.close()


def _drain(process: subprocess.Popen[str]) -> None:
    """Read the server's log until it ends, so a full pipe never blocks it."""
    assert process.stderr is not None
    for _ in process.stderr:
        pass


@pytest.mark.timeout(30)  # about 5 s each on a busy 2-core machine
@on_sqlite_and_postgres
def test_every_acknowledged_call_is_in_the_store_after_kill_9(server_store: str) -> None:
    process, port = serve_process(server_store)
    threading.Thread(target=_drain, args=(process,), daemon=True).start()
    load = Load()
    stations = [f"KILL9-{index:02d}" for index in range(STATIONS)]

    lock = StoreLock(server_store)

    async def scenario() -> int:
        tasks = [asyncio.create_task(_station(port, station, load)) for station in stations]
        await eventually(
            lambda: load.meter_values >= ACKNOWLEDGED or any(task.done() for task in tasks),
            what=f"{ACKNOWLEDGED} MeterValues answered",
            timeout=20,
        )
        await asyncio.to_thread(lock.hold)
        try:
            await eventually(
                lambda: len(load.in_flight) == STATIONS or any(task.done() for task in tasks),
                what="every station waiting for an answer",
            )

            async def writer_waits() -> bool:
                return await asyncio.to_thread(lock.writer_waits, process.pid)

            await eventually(writer_waits, what="the writer stuck on the lock")
            assert not any(task.done() for task in tasks), "a station stopped before the kill"
            in_flight = len(load.in_flight)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            await asyncio.to_thread(lock.release)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        return in_flight

    try:
        in_flight = asyncio.run(scenario())
    finally:
        process.kill()
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert in_flight > 0, "the kill must land while CALLs are in flight"

    store = open_store(server_store, create=False)
    try:
        logged = {
            (recorded.event.station, recorded.event.direction, recorded.event.text)
            for recorded in store.iter_all()
            if isinstance(recorded.event, FrameLogged)
        }
    finally:
        store.close()
    lost = [
        (station, call, answer)
        for station, call, answer in load.acknowledged
        if (station, "in", call) not in logged or (station, "out", answer) not in logged
    ]
    assert len(load.acknowledged) >= ACKNOWLEDGED
    assert not lost, f"{len(lost)} of {len(load.acknowledged)} acknowledged calls lost: {lost[:3]}"
    assert chargeledger_cli("verify", store=server_store) == [], "no broken hash chain"
