"""Reactions once per event across the nodes sharing one PostgreSQL store.

Every node folds every event (:mod:`chargeledger.core.follower`), but each event's plugin
reactions (``chargeledger_react``) run on one node only:

* **An event of a session stream** (frames, a session opening or closing, a timed-out CALL)
  is reacted to by the node holding that session: the node named in its ``SessionOpened``,
  the one that commits the session's events. Its reactions mostly concern that station, whose
  connection is there.
* **Every other event** (operators' changes: tariffs, sites, tokens, local lists, campaigns;
  commands requested; timers) is reacted to by the **leader**: the one process holding the
  schema's leader advisory lock (:class:`Leadership`). ``chargeledger worker`` takes it with
  priority: while a worker runs no serving node leads; without one, one serving node does;
  when the leader dies its lock goes with its connection and another process takes it.

The leader also keeps the timers: it arms every pending one (whichever node recorded its
``TimerStarted``) and records it fired with the stream version after its start, directly in
the store (not through the group commit), so a second firing of one start is a version
conflict, dropped: a timer fires exactly once even when two processes believed they led.

**The reactions' position** is tracked in the table ``chargeledger_positions`` (name
``reactions``): every event up to it was reacted to by a leader and the commands it returned
were carried out (recorded). A new leader reacts to the events after it. Commands are done so
that doing them again changes nothing: a ``SendCall`` of a leader's reaction is named after
the event and the command's index (``reaction:POSITION:INDEX``, unless the plugin named it)
and is not sent when a ``CommandRequested`` of that name is in the log; a ``StartTimer`` is
not recorded again when the timer's newest event already has that due time. So a leader that
dies between recording a command and saving the position loses nothing and doubles nothing.

On SQLite and memory stores (one node) none of this runs: the
:class:`~chargeledger.core.dispatcher.CommitDispatcher` reacts to every event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import msgspec
import psycopg
import trio
from psycopg import sql

from chargeledger.core.api import CentralSystem
from chargeledger.core.commands import CloseSession, Command, SendCall, StartTimer
from chargeledger.core.dispatcher import CommitDispatcher
from chargeledger.core.errors import StoreUnavailable, StreamConflict
from chargeledger.core.events import (
    Recorded,
    SessionClosed,
    SessionOpened,
    TimerFired,
    TimerStarted,
    command_stream,
    timer_stream,
)
from chargeledger.core.feed import CommitFeed
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.store import (
    Store,
    postgres_connection,
    postgres_lock_key,
    postgres_schema,
)
from chargeledger.projections import Views

__all__ = [
    "LEADER_INTERVAL",
    "REACTIONS",
    "AuditTable",
    "ClusterDispatcher",
    "Leadership",
    "PositionTable",
]

log = logging.getLogger("chargeledger.cluster")

LEADER_INTERVAL = 1.0
"""Seconds between a process's attempts at the leader lock (and a leading node's checks for
a worker it must yield to)."""

REACTIONS = "reactions"
"""The name of the reactions' position in ``chargeledger_positions``."""

_SAVE_INTERVAL = 0.5
_KEEPALIVES = (
    ("tcp_keepalives_idle", sql.Literal(10)),
    ("tcp_keepalives_interval", sql.Literal(5)),
    ("tcp_keepalives_count", sql.Literal(3)),
)
_SESSION = "session:"


class PositionTable:
    """Named positions in ``chargeledger_positions`` (blocking; one connection of its own,
    reopened when lost). Raises ``StoreUnavailable``."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._table = sql.Identifier(postgres_schema(url), "chargeledger_positions")
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()

    def load(self, name: str) -> int | None:
        """The position saved as ``name``; ``None`` when none was."""
        query = sql.SQL("SELECT position FROM {} WHERE name = %s").format(self._table)
        row = self._run(lambda conn: conn.execute(query, (name,)).fetchone())
        return None if row is None else int(cast("tuple[int]", row)[0])

    def save(self, name: str, position: int, node: str) -> None:
        """Save ``position`` as ``name`` (never moving it back)."""
        query = sql.SQL(
            "INSERT INTO {0} (name, position, node) VALUES (%s, %s, %s) ON CONFLICT (name) "
            "DO UPDATE SET position = excluded.position, node = excluded.node, at = now() "
            "WHERE {0}.position < excluded.position"
        ).format(self._table)
        self._run(lambda conn: conn.execute(query, (name, position, node)))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, query: Callable[[psycopg.Connection[tuple[object, ...]]], object]) -> object:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = postgres_connection(self._url)
                return query(self._conn)
            except psycopg.Error as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise StoreUnavailable(f"tracked positions: {exc}") from exc


class AuditTable(PositionTable):
    """The worker's audit findings in ``chargeledger_audit``: one row, the position they are
    as of, the worker and when, the findings (JSON: see
    :func:`chargeledger.core.audit.report.published`). Blocking; raises
    ``StoreUnavailable``."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._table = sql.Identifier(postgres_schema(url), "chargeledger_audit")

    def publish(self, position: int, node: str, findings: bytes) -> None:
        """Replace the findings with ``findings`` (JSON) as of ``position``, in one statement
        (never by findings as of an earlier position)."""
        query = sql.SQL(
            "INSERT INTO {0} (position, node, findings) VALUES (%s, %s, %s::jsonb) "
            "ON CONFLICT (id) DO UPDATE SET position = excluded.position, "
            "node = excluded.node, at = now(), findings = excluded.findings "
            "WHERE {0}.position <= excluded.position"
        ).format(self._table)
        text = findings.decode()
        self._run(lambda conn: conn.execute(query, (position, node, text)))

    def published(self) -> tuple[int, str, float, dict[str, object]] | None:
        """The findings published: their position, the worker, their age in seconds (by the
        database's clock) and the JSON; ``None`` when none were (or the table is missing)."""
        query = sql.SQL(
            "SELECT position, node, extract(epoch FROM now() - at)::float8, findings FROM {}"
        ).format(self._table)
        try:
            row = self._run(lambda conn: conn.execute(query).fetchone())
        except StoreUnavailable:
            return None
        if row is None:
            return None
        position, node, age, findings = cast("tuple[int, str, float, dict[str, object]]", row)
        return int(position), str(node), float(age), findings


class Leadership:
    """Who leads the processes sharing a PostgreSQL schema: a session advisory lock.

    A ``worker`` first takes the worker lock (a second worker waits there, on standby), then
    the leader lock as soon as it is free. A serving node takes the leader lock only while no
    worker holds the worker lock, and yields it when one appears. The lock lives as long as
    the connection that took it: a process that dies or loses the database loses it.

    :meth:`run` calls ``on_lead()`` on the trio thread once the lock is taken and
    ``on_step_down()`` before it is given back (or once it is lost), and waits for each.
    """

    def __init__(self, url: str, *, worker: bool, interval: float = LEADER_INTERVAL) -> None:
        self._url = url
        schema = postgres_schema(url)
        self._leader_key = postgres_lock_key("leader", schema)
        self._worker_key = postgres_lock_key("worker", schema)
        self._worker = worker
        self._interval = interval
        self.leading = False

    async def run(
        self,
        on_lead: Callable[[], Awaitable[None]],
        on_step_down: Callable[[], Awaitable[None]],
    ) -> None:
        """Contend for the lead until cancelled (then the lock is given back)."""
        stop = threading.Event()
        token = trio.lowlevel.current_trio_token()
        thread = threading.Thread(
            target=self._contend,
            args=(token, stop, on_lead, on_step_down),
            name="leadership",
            daemon=True,
        )
        thread.start()
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join)
                if self.leading:
                    self.leading = False
                    await on_step_down()

    def _contend(
        self,
        token: trio.lowlevel.TrioToken,
        stop: threading.Event,
        on_lead: Callable[[], Awaitable[None]],
        on_step_down: Callable[[], Awaitable[None]],
    ) -> None:
        while not stop.is_set():
            try:
                with postgres_connection(self._url) as conn:
                    # The server notices a leader whose machine vanished (no FIN, no RST)
                    # within about 25 s instead of the system's two hours, and frees its lock.
                    for setting, value in _KEEPALIVES:
                        conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(setting), value))
                    self._hold(conn, token, stop, on_lead, on_step_down)
            except (psycopg.Error, OSError) as exc:
                log.warning("leadership: %s", exc)
            except trio.RunFinishedError:
                return
            if self.leading:  # the connection, and the lock with it, is gone
                self.leading = False
                self._tell(token, on_step_down)
            stop.wait(self._interval)

    def _hold(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        token: trio.lowlevel.TrioToken,
        stop: threading.Event,
        on_lead: Callable[[], Awaitable[None]],
        on_step_down: Callable[[], Awaitable[None]],
    ) -> None:
        standby = self._worker
        while not stop.is_set():
            if standby:
                standby = not self._try(conn, self._worker_key)
            elif not self.leading:
                if (self._worker or not self._worker_present(conn)) and self._try(
                    conn, self._leader_key
                ):
                    self.leading = True
                    log.info("leading the reactions and timers")
                    self._tell(token, on_lead)
            elif not self._worker and self._worker_present(conn):
                log.info("a worker runs: yielding the lead to it")
                self.leading = False
                self._tell(token, on_step_down)
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._leader_key,))
            else:
                conn.execute("SELECT 1")  # still connected, so still holding the lock
            stop.wait(self._interval)
        if self.leading:
            self.leading = False
            self._tell(token, on_step_down)
            conn.execute("SELECT pg_advisory_unlock(%s)", (self._leader_key,))

    @staticmethod
    def _tell(token: trio.lowlevel.TrioToken, callback: Callable[[], Awaitable[None]]) -> None:
        trio.from_thread.run(callback, trio_token=token)

    @staticmethod
    def _try(conn: psycopg.Connection[tuple[object, ...]], key: int) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])

    def _worker_present(self, conn: psycopg.Connection[tuple[object, ...]]) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = 0 AND objid::bigint = %s AND objsubid = 1 AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()))",
            (self._worker_key,),
        ).fetchone()
        return bool(row and row[0])


class ClusterDispatcher(CommitDispatcher):
    """The dispatcher of a process sharing a PostgreSQL store: folds what the follower hands
    it (:meth:`fold`), reacts to the events this process owns (see the module docstring),
    carries out the commands, keeps the timers while leading.

    ``stations=False`` (the worker) reacts to no session's events.
    """

    def __init__(
        self,
        views: Views,
        plugins: PluginHost,
        feed: CommitFeed,
        *,
        store: Store,
        node: str,
        stations: bool = True,
    ) -> None:
        super().__init__(views, plugins, feed)
        self.store = store
        self.node = node
        self.stations = stations
        self.positions = PositionTable(store.url)
        self.leading = False
        self.observe: Callable[[Recorded], None] | None = None
        """Handed each event once the views folded it (the worker's auditor)."""
        self._holders: dict[str, str] = {}
        """Session id -> the node that opened it, for sessions opened since this start."""
        self._commands, self._incoming = trio.open_memory_channel[tuple[Command, int | None, int]](
            float("inf")
        )
        self._outstanding: dict[int, int] = {}
        self._reacted = 0
        self._floor: int | None = None
        self._armed: dict[str, tuple[int, trio.CancelScope]] = {}
        self._nursery: trio.Nursery | None = None
        self._csms: CentralSystem | None = None

    # -- folding and deciding who reacts ----------------------------------------------------

    def on_commit(self, batch: Sequence[Recorded]) -> None:
        """Not used: a following process's commits reach :meth:`fold` through the follower."""
        raise RuntimeError("a ClusterDispatcher folds what the follower hands it")

    def fold(self, batch: list[Recorded]) -> None:
        """Fold ``batch`` (a run of the log, positions ascending), react to the events this
        process owns, wake the feed's waiters. Never raises."""
        if not batch:
            return
        for recorded in batch:
            self.views.apply(recorded)
            if self.observe is not None:
                self.observe(recorded)
            stream = recorded.stream
            if stream.startswith(_SESSION):
                if self.stations and self._holder(recorded) == self.node:
                    self._react(recorded, None)
            else:
                if self.leading:
                    self._react(recorded, recorded.position)
                self._keep_timer(recorded)
            if self.leading:
                self._reacted = recorded.position
        self.feed.advance(batch[-1].position)

    def _holder(self, recorded: Recorded) -> str | None:
        """The node holding the session of ``recorded`` (a session stream's event)."""
        session = recorded.stream[len(_SESSION) :]
        event = recorded.event
        if isinstance(event, SessionOpened):
            self._holders[session] = event.node
            return event.node
        holder = self._holders.get(session)
        if isinstance(event, SessionClosed):
            self._holders.pop(session, None)
            # Another node recorded this close: it reacts. A takeover's close is written with
            # the new session's opening (folded just before); a release by a live node for a
            # node presumed dead names the releaser.
            if event.released_by is not None:
                return event.released_by
            if event.replaced_by is not None and event.replaced_by in self._holders:
                return self._holders[event.replaced_by]
        if holder is None:  # opened before this process started: the projection knows
            state = self.views.stations.get(getattr(event, "station", ""))
            if state is not None and state.session == session:
                holder = state.node
        return holder

    def _react(self, recorded: Recorded, position: int | None) -> None:
        try:
            commands = self.plugins.react(recorded, self.views)
        except Exception:
            log.exception("plugins failed to react to position %d", recorded.position)
            return
        for index, command in enumerate(commands):
            if position is not None:
                self._outstanding[position] = self._outstanding.get(position, 0) + 1
            self._commands.send_nowait((command, position, index))

    def _react_late(self, recorded: Recorded) -> None:
        """React to ``recorded``, folded earlier, with today's views: without the exchange
        the views' newest event completed (an event no session owns completes none)."""
        exchange = self.views.last_exchange
        self.views.last_exchange = None
        try:
            self._react(recorded, recorded.position)
        finally:
            self.views.last_exchange = exchange

    def execute(self, commands: Sequence[Command]) -> None:
        """Queue ``commands`` (those a plugin returned with an answer to a CALL of a station
        connected here) for :meth:`run`."""
        for command in commands:
            self._commands.send_nowait((command, None, 0))

    # -- the lead ---------------------------------------------------------------------------

    def cursor(self) -> int:
        """The reactions' position to save: every event up to it reacted to and its
        commands carried out."""
        cursor = min(self._outstanding) - 1 if self._outstanding else self._reacted
        if self._floor is not None:
            cursor = min(cursor, self._floor)
        return cursor

    async def lead(self, *, catch_up: bool = True) -> None:
        """Become the leader: arm the pending timers and react to the events after the
        saved reactions' position (late: with today's views; ``catch_up=False`` when the
        views stand at that position, as the worker's do)."""
        saved = await trio.to_thread.run_sync(self.positions.load, REACTIONS)
        folded = self.views.position
        self._reacted = folded
        self.leading = True
        self._arm_pending()
        if not catch_up or saved is None or saved >= folded:
            return
        self._floor = saved
        try:
            after = saved
            while after < folded:
                events = await trio.to_thread.run_sync(self.store.read, after, 1000, folded)
                if not events:
                    break
                for recorded in events:
                    if self.leading and not recorded.stream.startswith(_SESSION):
                        self._react_late(recorded)
                after = events[-1].position
        except StoreUnavailable as exc:
            log.warning("reacting to the events after position %d: %s", saved, exc)
        finally:
            self._floor = None

    def _arm_pending(self) -> None:
        """Arm every timer the views hold pending (once :meth:`run` runs)."""
        for name, due in self.views.timers.pending().items():
            version = self.views.timers.started_version(name)
            if version is not None:
                self._arm_timer(name, due, version)

    async def step_down(self) -> None:
        """Stop leading: disarm the timers, save the reactions' position."""
        if not self.leading:
            return
        self.leading = False
        for _, scope in self._armed.values():
            scope.cancel()
        self._armed.clear()
        await self._save()

    async def _save(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(
                    self.positions.save, REACTIONS, self.cursor(), self.node
                )
            except StoreUnavailable as exc:
                log.warning("saving the reactions' position: %s", exc)

    # -- carrying out -----------------------------------------------------------------------

    async def run(self, csms: CentralSystem) -> None:
        """Carry out queued commands until cancelled; save the reactions' position while
        leading, every half second."""
        self._csms = csms
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.leading:  # led before running: the timers wait to be armed
                self._arm_pending()
            nursery.start_soon(self._save_while_leading)
            async for command, position, index in self._incoming:
                if isinstance(command, StartTimer):  # in order: the newest start wins
                    await self._start_timer(command, position)
                    self._done(position)
                else:
                    nursery.start_soon(self._carry_out, csms, command, position, index)

    async def _save_while_leading(self) -> None:
        saved = -1
        while True:
            await trio.sleep(_SAVE_INTERVAL)
            if self.leading and self.cursor() != saved:
                saved = self.cursor()
                await self._save()

    def _done(self, position: int | None) -> None:
        if position is None:
            return
        left = self._outstanding.get(position, 0) - 1
        if left > 0:
            self._outstanding[position] = left
        else:
            self._outstanding.pop(position, None)

    async def _carry_out(
        self, csms: CentralSystem, command: Command, position: int | None, index: int
    ) -> None:
        try:
            if isinstance(command, SendCall):
                if position is not None:
                    request_id = command.request_id or f"reaction:{position}:{index}"
                    stream = command_stream(request_id)
                    done = await trio.to_thread.run_sync(self.store.last_version, stream)
                    if done:
                        log.info("%s of position %d was sent already", command.action, position)
                        return
                    command = msgspec.structs.replace(command, request_id=request_id)
                await self._send_call(csms, command)
            elif isinstance(command, CloseSession):
                csms.close_session(command.station, command.code, command.reason)
            else:
                log.error("command %r is only valid as an answer to a CALL", command)
        except StoreUnavailable as exc:
            log.info("%s: %s", type(command).__name__, exc)
        finally:
            self._done(position)

    async def _start_timer(self, command: StartTimer, position: int | None) -> None:
        """Record ``TimerStarted`` at the timer stream's next version (directly: another
        process may write that stream); the leader arms it once folded. A leader's reaction
        done again (``position`` set) does not start a timer whose newest event has that
        due time already."""
        stream = timer_stream(command.name)
        for _ in range(5):
            try:
                last = await trio.to_thread.run_sync(self.store.last_event, stream)
                if position is not None and last is not None:
                    event = last[1]
                    if isinstance(event, TimerStarted | TimerFired) and event.due == command.due:
                        return
                version = 1 if last is None else last[0] + 1
                started = TimerStarted(
                    name=command.name, due=command.due, at=time.time(), node=self.node
                )
                await trio.to_thread.run_sync(self.store.append, [(stream, version, started)])
                return
            except StreamConflict:
                continue  # another process wrote the timer meanwhile: read it again
            except StoreUnavailable as exc:
                log.warning("timer %s: %s", command.name, exc)
                return
        log.warning("timer %s: kept conflicting, not started", command.name)

    def _keep_timer(self, recorded: Recorded) -> None:
        """While leading: arm a timer whose start is folded, disarm one fired."""
        event = recorded.event
        if isinstance(event, TimerStarted) and self.leading:
            self._arm_timer(event.name, event.due, recorded.version)
        elif isinstance(event, TimerFired):
            armed = self._armed.get(event.name)
            if armed is not None and armed[0] < recorded.version:
                armed[1].cancel()
                del self._armed[event.name]

    def _arm_timer(self, name: str, due: float, version: int) -> None:
        if self._nursery is None:
            return
        previous = self._armed.pop(name, None)
        if previous is not None:
            previous[1].cancel()
        scope = trio.CancelScope()
        self._armed[name] = (version, scope)
        self._nursery.start_soon(self._fire, name, due, version, scope)

    async def _fire(self, name: str, due: float, version: int, scope: trio.CancelScope) -> None:
        """Wait until ``due``, record ``TimerFired`` at ``version + 1`` (a conflict: fired
        or started again elsewhere, dropped); retried while the store is unavailable."""
        stream = timer_stream(name)
        with scope:
            await trio.sleep(max(0.0, due - time.time()))
            while True:
                fired = TimerFired(name=name, due=due, at=time.time(), node=self.node)
                try:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(
                            self.store.append, [(stream, version + 1, fired)]
                        )
                    break
                except StreamConflict:
                    log.info("timer %s was fired or started again elsewhere", name)
                    break
                except StoreUnavailable as exc:
                    log.warning("timer %s: %s (trying again)", name, exc)
                    await trio.sleep(1.0)
        if self._armed.get(name, (None, None))[1] is scope:
            del self._armed[name]
