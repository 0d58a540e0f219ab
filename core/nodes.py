"""The nodes sharing one PostgreSQL store: which holds each station (fenced sessions),
heartbeats, commands routed through the database (docs/cluster.md).

A :class:`Nodes` runs beside the gateway of every node whose store is PostgreSQL:

* **Holding a station.** A node that accepts a station's connection records
  ``SessionHeld`` in the station's ``holder:<station>`` stream at the version after the one it
  read (optimistic concurrency: of two nodes taking the same station at once, one commits and
  the other reads again and takes it from the first), in one transaction with the new
  ``SessionOpened`` and, when another node's session still held the station, that session's
  ``SessionClosed`` at the version after its head. That close is the fence: the old node's
  writer meets it as a conflict on its next append to the session and refuses every later
  one (:class:`~chargeledger.core.errors.SessionFenced`), so nothing the old node does for
  the session is committed, and nothing uncommitted is ever answered. A notification tells
  the old node at once, which closes the connection.
* **Heartbeats.** Each node upserts its row of ``chargeledger_nodes`` (the database's clock)
  every ``heartbeat_interval``; a live node releases the sessions of a node whose heartbeat
  stopped ``node_timeout`` ago (``SessionClosed`` at the head's next version: two releasers
  conflict, one records it).
* **Routed commands.** :meth:`Cluster.ask` records ``CommandRouted`` (version 1 of the
  command's stream) for the node holding the station and notifies it (``LISTEN/NOTIFY``);
  the holder takes it by recording its ``CommandRequested`` at version 2, sends it through
  its one door, records ``CommandAnswered`` at version 3 and notifies the asker, which
  returns the result or raises the error as for a local station. The log is the truth; a
  lost notification costs a timeout, never a wrong answer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import psycopg
import trio
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from chargeledger.core.errors import (
    CallError,
    CallTimeout,
    CallTooLarge,
    InvalidUseCaseArguments,
    OutboundCallFailed,
    OutboundValidationError,
    StationBusy,
    StationOffline,
    StoreUnavailable,
    StreamConflict,
    UnsupportedUseCase,
)
from chargeledger.core.events import (
    CommandAnswered,
    CommandRequested,
    CommandRouted,
    Event,
    FrameLogged,
    SessionClosed,
    SessionHeld,
    SessionOpened,
    command_stream,
    decode_event,
    holder_stream,
    session_stream,
)
from chargeledger.core.settings import Settings
from chargeledger.core.store import (
    EVENTS_TABLE,
    Store,
    postgres_connection,
    postgres_lock_key,
    postgres_pool,
    postgres_schema,
    unpack_state,
)
from chargeledger.core.writer import GroupCommitWriter

__all__ = ["Nodes", "answer_of", "raise_answer"]

log = logging.getLogger("chargeledger.nodes")

CLOSE_TAKEN_OVER = 1008
"""The close code recorded for a session another node took over (the gateway's code for a
session replaced by a newer connection)."""

CLOSE_RELEASED = 1006
"""The close code recorded for a session released because its node is presumed dead."""

HOLD_ATTEMPTS = 10
"""Tries of one takeover while other writers keep moving the streams it writes."""

ANSWERED_LOOKBACK = 6
"""How many of a fenced session's newest events are searched for its last answered CALL."""

LISTEN_WAIT = 10.0
"""Seconds a node starting waits to be listening before it goes on without (retrying)."""

POOL_SIZE = 4
"""Connections of a node's pool (reads of holders, heartbeats, notifications)."""

STALE_BEATS = 3
"""A node whose heartbeat is older than this many intervals is not sent commands."""

_NODES = "chargeledger_nodes"
_HOLDERS_INDEX = "chargeledger_holders"

Serve = Callable[[CommandRouted], Awaitable[CommandAnswered | None]]
"""What sends a routed command through this node's one door and says how it went."""


class Nodes:
    """This node's part in a cluster on one PostgreSQL schema (see the module docstring).

    :meth:`start` (before the gateway accepts connections) creates the node table and
    records the first heartbeat; :meth:`run` keeps the heartbeat, listens for notifications,
    releases dead nodes' sessions and serves routed commands until cancelled.
    """

    def __init__(self, store: Store, writer: GroupCommitWriter, settings: Settings) -> None:
        self.store = store
        self.writer = writer
        self.settings = settings
        self.node = settings.node
        self.schema = postgres_schema(store.url)
        self.channel = f"chargeledger_nodes_{postgres_lock_key('nodes', self.schema):08x}"
        self.on_fenced: Callable[[str, str], None] = lambda session, reason: None
        """Called with a session id of this node another node fenced, and why (the gateway
        closes that connection)."""
        self._answers: dict[str, trio.Event] = {}
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._listening = threading.Event()
        self._stop = threading.Event()

    # -- the database, off the trio thread ---------------------------------------------------

    def _execute(self, query: sql.SQL | sql.Composed, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run ``query`` on a connection of this node's pool (a lock is waited for at most
        the store's lock timeout); ``StoreUnavailable`` when the database fails."""
        try:
            if self._pool is None:
                self._pool = postgres_pool(self.store.url, POOL_SIZE)
            with self._pool.connection() as connection:
                cursor = connection.execute(query, params)
                return cursor.fetchall() if cursor.description is not None else []
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(f"nodes query failed: {exc}") from exc

    def last_event(self, stream: str) -> tuple[int, Event] | None:
        """The newest ``(version, event)`` of ``stream`` (``Store.last_event``, but waiting at
        most the lock timeout: a station connecting while the tables are locked is refused
        in bounded time). Blocking; ``StoreUnavailable``."""
        newest = self.last_events(stream, 1)
        return newest[0] if newest else None

    def last_events(self, stream: str, count: int) -> list[tuple[int, Event]]:
        """The ``count`` newest ``(version, event)`` of ``stream``, newest first (as
        :meth:`last_event`). Blocking; ``StoreUnavailable``."""
        rows = self._execute(
            sql.SQL(
                "SELECT originator_version, topic, state FROM {}.{} WHERE originator_id = %s "
                "ORDER BY originator_version DESC LIMIT %s"
            ).format(sql.Identifier(self.schema), sql.Identifier(EVENTS_TABLE)),
            (stream, count),
        )
        return [
            (int(version), decode_event(topic, unpack_state(bytes(state))[2]))
            for version, topic, state in rows
        ]

    def last_answered(self, session: str) -> tuple[str, str, str, str] | None:
        """The station CALL a session answered last, when it is among the session's newest
        few events: ``(message id, CALL text, answer text, session)``, for the retransmission
        window of the node taking the station over (a CALL the old node committed and
        answered but could not deliver, repeated by the station, is answered the same).
        Blocking; ``StoreUnavailable``."""
        answer: tuple[str, str] | None = None
        for _, event in self.last_events(session_stream(session), ANSWERED_LOOKBACK):
            if not isinstance(event, FrameLogged) or not event.text:
                continue
            try:
                frame = msgspec.json.decode(event.text)
            except msgspec.DecodeError:
                continue
            if not isinstance(frame, list) or len(frame) < 3:
                continue
            if answer is None and event.direction == "out" and frame[0] in (3, 4):
                answer = (str(frame[1]), event.text)
            elif answer is not None and event.direction == "in" and frame[:2] == [2, answer[0]]:
                return answer[0], event.text, answer[1], session
        return None

    def _setup(self) -> None:
        """Create the node table and the holders' index when missing: in one transaction
        under an advisory lock, since nodes starting together race on ``IF NOT EXISTS``."""
        key = postgres_lock_key("nodes", self.schema)
        schema = sql.Identifier(self.schema)
        statements: list[sql.Composed] = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (node text PRIMARY KEY, "
                "beat double precision NOT NULL, started double precision NOT NULL, "
                "released double precision)"
            ).format(schema, sql.Identifier(_NODES)),
            # The newest holder of every station is read when a node dies: a partial index
            # keeps that off the frames.
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {}.{} (originator_id, originator_version) "
                "WHERE originator_id LIKE 'holder:%%'"
            ).format(sql.Identifier(_HOLDERS_INDEX), schema, sql.Identifier(EVENTS_TABLE)),
        ]
        try:
            if self._pool is None:
                self._pool = postgres_pool(self.store.url, POOL_SIZE)
            with self._pool.connection() as connection, connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                for statement in statements:
                    connection.execute(statement)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(f"nodes setup failed: {exc}") from exc

    def _beat(self, starting: bool = False) -> None:
        now = "extract(epoch from clock_timestamp())"
        self._execute(
            sql.SQL(
                "INSERT INTO {}.{} (node, beat, started) VALUES (%s, " + now + ", " + now + ") "
                "ON CONFLICT (node) DO UPDATE SET beat = EXCLUDED.beat, released = NULL"
                + (", started = EXCLUDED.started" if starting else "")
            ).format(sql.Identifier(self.schema), sql.Identifier(_NODES)),
            (self.node,),
        )

    def heartbeat_age(self, node: str) -> float | None:
        """Seconds since ``node``'s last heartbeat (the database's clock); ``None`` when it
        never sent one. Blocking."""
        rows = self._execute(
            sql.SQL(
                "SELECT extract(epoch from clock_timestamp()) - beat FROM {}.{} WHERE node = %s"
            ).format(sql.Identifier(self.schema), sql.Identifier(_NODES)),
            (node,),
        )
        return float(rows[0][0]) if rows else None

    def started(self, node: str) -> float | None:
        """When ``node`` last started (the database's clock), ``None`` when it never sent a
        heartbeat: a different value later means it restarted meanwhile. Blocking."""
        rows = self._execute(
            sql.SQL("SELECT started FROM {}.{} WHERE node = %s").format(
                sql.Identifier(self.schema), sql.Identifier(_NODES)
            ),
            (node,),
        )
        return float(rows[0][0]) if rows else None

    def _stale_nodes(self) -> list[tuple[str, float, float]]:
        """Other nodes whose heartbeat stopped ``node_timeout`` ago and whose sessions were
        not released since: ``(node, beat, age)``."""
        rows = self._execute(
            sql.SQL(
                "SELECT node, beat, extract(epoch from clock_timestamp()) - beat FROM {}.{} "
                "WHERE node <> %s AND released IS NULL "
                "AND beat < extract(epoch from clock_timestamp()) - %s"
            ).format(sql.Identifier(self.schema), sql.Identifier(_NODES)),
            (self.node, self.settings.node_timeout),
        )
        return [(str(node), float(beat), float(age)) for node, beat, age in rows]

    def _mark_released(self, node: str, beat: float) -> None:
        """Note that ``node``'s sessions were released, unless it beat again meanwhile."""
        self._execute(
            sql.SQL(
                "UPDATE {}.{} SET released = extract(epoch from clock_timestamp()) "
                "WHERE node = %s AND beat = %s"
            ).format(sql.Identifier(self.schema), sql.Identifier(_NODES)),
            (node, beat),
        )

    def _holders(self) -> list[SessionHeld]:
        """The newest ``SessionHeld`` of every station."""
        rows = self._execute(
            sql.SQL(
                "SELECT DISTINCT ON (originator_id) topic, state FROM {}.{} "
                "WHERE originator_id LIKE 'holder:%%' "
                "ORDER BY originator_id, originator_version DESC"
            ).format(sql.Identifier(self.schema), sql.Identifier(EVENTS_TABLE))
        )
        held = [decode_event(topic, unpack_state(bytes(state))[2]) for topic, state in rows]
        return [event for event in held if isinstance(event, SessionHeld)]

    def _notify(self, kind: str, node: str, subject: str) -> None:
        self._execute(
            sql.SQL("SELECT pg_notify(%s, %s)"), (self.channel, f"{kind}\t{node}\t{subject}")
        )

    async def notify(
        self, kind: Literal["command", "answer", "fenced"], node: str, subject: str
    ) -> None:
        """Tell ``node`` about ``subject`` (a request id, a session id); a failure is logged:
        the log holds the truth, and the waiting side reads it again anyway."""
        try:
            await trio.to_thread.run_sync(self._notify, kind, node, subject)
        except StoreUnavailable as exc:
            log.warning("could not notify node %r (%s %s): %s", node, kind, subject, exc)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the node table (when missing) and record this node's first heartbeat.
        Raises ``StoreUnavailable``."""
        await trio.to_thread.run_sync(self._setup)
        await trio.to_thread.run_sync(self._beat, True)

    async def run(
        self, serve: Serve, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Beat, listen, release and serve until cancelled; ``task_status`` once listening."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_beating)
                nursery.start_soon(self._release_dead_nodes)
                nursery.start_soon(self._listen_forever, serve, nursery)
                # Commands routed here before LISTEN would wait for their askers' timeout.
                if not await trio.to_thread.run_sync(self._listening.wait, LISTEN_WAIT):
                    log.error("not listening on %s after %g s", self.channel, LISTEN_WAIT)
                task_status.started()
        finally:
            self._stop.set()
            if self._pool is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._pool.close)

    async def _keep_beating(self) -> None:
        while True:
            await trio.sleep(self.settings.heartbeat_interval)
            try:
                await trio.to_thread.run_sync(self._beat)
            except StoreUnavailable as exc:
                log.error("heartbeat of node %r not recorded: %s", self.node, exc)

    async def _listen_forever(self, serve: Serve, nursery: trio.Nursery) -> None:
        token = trio.lowlevel.current_trio_token()

        def delivered(payload: str) -> None:
            kind, _, rest = payload.partition("\t")
            node, _, subject = rest.partition("\t")
            if node != self.node:
                return
            if kind == "command":
                nursery.start_soon(self._take, subject, serve)
            elif kind == "answer":
                waiter = self._answers.get(subject)
                if waiter is not None:
                    waiter.set()
            elif kind == "fenced":
                self.on_fenced(subject, "taken over by another node")

        while not self._stop.is_set():
            try:
                await trio.to_thread.run_sync(
                    self._listen, delivered, token, abandon_on_cancel=True
                )
            except psycopg.Error as exc:
                log.error("LISTEN on %s failed (again in 1 s): %s", self.channel, exc)
                self._listening.clear()
                await trio.sleep(1)

    def _listen(self, delivered: Callable[[str], None], token: trio.lowlevel.TrioToken) -> None:
        with postgres_connection(self.store.url) as connection:
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self._listening.set()
            while not self._stop.is_set():
                for notification in connection.notifies(timeout=1.0):
                    try:
                        trio.from_thread.run_sync(delivered, notification.payload, trio_token=token)
                    except trio.RunFinishedError:
                        return

    # -- holding stations --------------------------------------------------------------------

    async def hold(
        self, opened: SessionOpened, local: str | None
    ) -> tuple[str, str, str, str] | None:
        """Record ``opened`` with ``SessionHeld`` in the station's holder stream; when the
        session holding the station before (not ``local``, this node's own replaced session,
        which records its own close) is still open, record it closed in the same
        transaction: the fence. Returns the CALL the fenced session answered last, for the
        station's retransmission window (:meth:`last_answered`), when it fenced another
        node's session. Raises ``StoreUnavailable`` when it cannot be recorded."""
        station, holders = opened.station, holder_stream(opened.station)
        for _ in range(HOLD_ATTEMPTS):
            tail = await trio.to_thread.run_sync(self.last_event, holders)
            version, previous = 0, None
            if tail is not None:
                version, event = tail
                previous = event if isinstance(event, SessionHeld) else None
            events: list[tuple[str, Any]] = []
            versions = {holders: version + 1, opened_stream(opened): 1}
            fenced = None
            if previous is not None and previous.session != local:
                old = session_stream(previous.session)
                last = await trio.to_thread.run_sync(self.last_event, old)
                if last is not None and not isinstance(last[1], SessionClosed):
                    fenced = previous
                    reason = f"taken over by node {self.node!r} (session {opened.session})"
                    close = SessionClosed(
                        station=station,
                        session=previous.session,
                        at=opened.at,
                        code=CLOSE_TAKEN_OVER,
                        reason=reason,
                        by="csms",
                        replaced_by=opened.session,
                    )
                    events.append((old, close))
                    versions[old] = last[0] + 1
            held = SessionHeld(
                station=station,
                session=opened.session,
                node=self.node,
                at=opened.at,
                replaces=previous.session if previous is not None else None,
                replaces_node=previous.node if previous is not None else "",
            )
            # Opened first: a reader of the station's events meets its session's opening
            # before anything about it (the old session's close comes last, as a replaced
            # session's close does on one node).
            events[:0] = [(opened_stream(opened), opened), (holders, held)]
            try:
                await self.writer.append(events, versions=versions)
            except StreamConflict:
                continue
            if fenced is not None and fenced.node != self.node:
                await self.notify("fenced", fenced.node, fenced.session)
                return await trio.to_thread.run_sync(self.last_answered, fenced.session)
            return None
        raise StoreUnavailable(f"could not take {station!r} over: its streams keep moving")

    # -- releasing the sessions of dead nodes ------------------------------------------------

    async def _release_dead_nodes(self) -> None:
        while True:
            await trio.sleep(self.settings.heartbeat_interval)
            try:
                await self.release_dead_nodes()
            except StoreUnavailable as exc:
                log.error("could not look for dead nodes: %s", exc)

    async def release_dead_nodes(self) -> int:
        """Record closed the open sessions of every node whose heartbeat stopped
        ``node_timeout`` ago; how many this node closed. Raises ``StoreUnavailable``."""
        stale = await trio.to_thread.run_sync(self._stale_nodes)
        if not stale:
            return 0
        holders = await trio.to_thread.run_sync(self._holders)
        closed = 0
        for node, beat, age in stale:
            reason = (
                f"node {node!r} sent no heartbeat for {age:.0f} s (node_timeout "
                f"{self.settings.node_timeout:g} s): presumed dead, released by node {self.node!r}"
            )
            for held in holders:
                if held.node == node and await self._release(held, reason):
                    closed += 1
            await trio.to_thread.run_sync(self._mark_released, node, beat)
            log.warning("%s", reason)
        return closed

    async def _release(self, held: SessionHeld, reason: str) -> bool:
        stream = session_stream(held.session)
        last = await trio.to_thread.run_sync(self.last_event, stream)
        if last is None or isinstance(last[1], SessionClosed):
            return False
        close = SessionClosed(
            station=held.station,
            session=held.session,
            at=time.time(),
            code=CLOSE_RELEASED,
            reason=reason,
            by="csms",
            released_by=self.node,
        )
        try:
            await self.writer.append([(stream, close)], versions={stream: last[0] + 1})
        except StreamConflict:
            return False  # another node released it, or the node is alive: next round
        return True

    # -- routed commands ---------------------------------------------------------------------

    def _holder(self, station: str) -> SessionHeld:
        """The session of another node holding ``station``; ``StationOffline`` saying why
        when none does or its node is not alive. Blocking."""
        tail = self.last_event(holder_stream(station))
        held = tail[1] if tail is not None else None
        if not isinstance(held, SessionHeld) or held.node == self.node:
            raise StationOffline(station=station, action=None, reason="not connected to any node")
        last = self.last_event(session_stream(held.session))
        if last is None or isinstance(last[1], SessionClosed):
            raise StationOffline(station=station, action=None, reason="not connected to any node")
        age = self.heartbeat_age(held.node)
        limit = STALE_BEATS * self.settings.heartbeat_interval
        if age is None or age > limit:
            silent = "never" if age is None else f"not for {age:.0f} s"
            raise StationOffline(
                station=station,
                action=None,
                reason=f"connected to node {held.node!r}, which sent a heartbeat {silent}",
            )
        return held

    async def locate(self, station: str) -> SessionHeld:
        """The live session of another node holding ``station``; ``StationOffline`` saying
        why, at once, when no live node holds it (nothing recorded)."""
        return await trio.to_thread.run_sync(self._holder, station)

    async def ask(
        self,
        held: SessionHeld,
        *,
        key: str,
        role: str,
        mode: Literal["use_case", "message"],
        command: str,
        payload: dict[str, Any],
        request_id: str | None,
    ) -> dict[str, Any]:
        """Have the node of ``held`` (:meth:`locate`) send the command and return its result
        (the CALLRESULT payload, or the use case result as builtins), or raise its error as
        the holder raised it (``StationOffline``, ``CallError``, ``CallTimeout``, ...).

        When the holder does not take the command within ``2 * heartbeat_interval``, that is
        recorded as its answer (so it will never be sent) and ``StationOffline`` raised."""
        station = held.station
        routed = CommandRouted(
            request_id=request_id or str(uuid.uuid4()),
            station=station,
            at=time.time(),
            by=self.node,
            to=held.node,
            session=held.session,
            key=key,
            role=role,
            mode=mode,
            command=command,
            payload=payload,
        )
        stream = command_stream(routed.request_id)
        waiter = self._answers[routed.request_id] = trio.Event()
        try:
            try:
                await self.writer.append([(stream, routed)], versions={stream: 1})
            except StreamConflict:
                raise ValueError(f"request id {routed.request_id!r} is taken") from None
            await self.notify("command", held.node, routed.request_id)
            return raise_answer(await self._await_answer(routed, waiter))
        finally:
            del self._answers[routed.request_id]

    async def _await_answer(self, routed: CommandRouted, waiter: trio.Event) -> CommandAnswered:
        stream = command_stream(routed.request_id)
        interval = self.settings.heartbeat_interval
        taken = False
        # The holder's start as the command is routed: another value later means it
        # restarted, and a command it took before will never be answered.
        incarnation = await trio.to_thread.run_sync(self.started, routed.to)
        deadline = trio.current_time() + 2 * interval
        # The longest a command waits on its holder: behind a full queue of CALLs, each
        # waiting its call_timeout, then a report's parts as long again.
        settings = self.settings
        longest = (settings.outbound_queue + 2) * settings.call_timeout + 2 * interval
        give_up = trio.current_time() + longest
        while True:
            with trio.move_on_after(min(interval, 1.0)):
                await waiter.wait()
            events = [
                event for _, event in await trio.to_thread.run_sync(self.store.read_stream, stream)
            ]
            answer = next((e for e in events if isinstance(e, CommandAnswered)), None)
            if answer is not None:
                return answer
            if waiter.is_set():
                waiter = self._answers[routed.request_id] = trio.Event()
            taken = taken or any(isinstance(e, CommandRequested) for e in events)
            if not taken and trio.current_time() >= deadline:
                reason = f"node {routed.to!r} did not take the command within {2 * interval:g} s"
                gave_up = _answered(
                    routed,
                    self.node,
                    None,
                    StationOffline(station=routed.station, action=None, reason=reason),
                )
                try:
                    await self.writer.append([(stream, gave_up)], versions={stream: 2})
                except StreamConflict:
                    taken = True  # it took it just now
                    continue
                return gave_up
            if taken:
                age = await trio.to_thread.run_sync(self.heartbeat_age, routed.to)
                started = await trio.to_thread.run_sync(self.started, routed.to)
                why: str | None = None
                if age is None or age > STALE_BEATS * interval:
                    why = f"node {routed.to!r} stopped before answering"
                elif started != incarnation:
                    why = f"node {routed.to!r} restarted before answering"
                elif trio.current_time() >= give_up:
                    why = f"node {routed.to!r} did not answer within {longest:g} s"
                if why is not None:
                    # Recorded as the command's answer, after the take: a holder answering
                    # at the same moment conflicts, and its answer is read instead.
                    offline = _answered(
                        routed,
                        self.node,
                        None,
                        StationOffline(station=routed.station, action=None, reason=why),
                    )
                    try:
                        await self.writer.append(
                            [(stream, offline)], versions={stream: len(events) + 1}
                        )
                    except StreamConflict:
                        continue  # the holder answered just now
                    return offline

    async def _take(self, request_id: str, serve: Serve) -> None:
        """Serve the routed command ``request_id`` (notified): send it through this node's
        one door (``serve`` records the take), record the answer, notify the asker."""
        stream = command_stream(request_id)
        try:
            events = await trio.to_thread.run_sync(self.store.read_stream, stream)
            if len(events) != 1 or not isinstance(events[0][1], CommandRouted):
                return  # answered already (given up by the asker), or not a routed command
            routed = events[0][1]
            answer = await serve(routed)
            if answer is None:
                return  # the asker gave up first: nothing was sent
            # After the take (version 2), or at version 2 when it failed before sending
            # (then against the asker's giving up: whichever commits first is the answer).
            tail = await trio.to_thread.run_sync(self.last_event, stream)
            if tail is None or isinstance(tail[1], CommandAnswered):
                return
            await self.writer.append([(stream, answer)], versions={stream: tail[0] + 1})
            await self.notify("answer", routed.by, request_id)
        except (StoreUnavailable, StreamConflict) as exc:
            log.error("routed command %s not served: %s", request_id, exc)


def opened_stream(opened: SessionOpened) -> str:
    return session_stream(opened.session)


_ERROR_FIELDS: tuple[str, ...] = ("reason", "code", "description", "details", "timeout")
_ERROR_FIELDS += ("limit", "size", "protocol", "kind")


def _answered(
    routed: CommandRouted, node: str, result: dict[str, Any] | None, error: Exception | None
) -> CommandAnswered:
    details: dict[str, Any] = {}
    name = None
    if error is not None:
        name = type(error).__name__
        details = {"message": str(error)}
        for field in _ERROR_FIELDS:
            if hasattr(error, field):
                details[field] = msgspec.to_builtins(getattr(error, field))
        if isinstance(error, OutboundCallFailed | OutboundValidationError):
            details["action"] = error.action
    return CommandAnswered(
        request_id=routed.request_id,
        station=routed.station,
        at=time.time(),
        node=node,
        result=result,
        error=name,
        details=details,
    )


def answer_of(
    routed: CommandRouted, node: str, result: dict[str, Any] | None, error: Exception | None
) -> CommandAnswered:
    """The ``CommandAnswered`` of ``routed`` sent by ``node``: ``result``, or ``error``'s
    class name and fields."""
    return _answered(routed, node, result, error)


def raise_answer(answer: CommandAnswered) -> dict[str, Any]:
    """``answer``'s result, or its error raised as the node that sent it raised it."""
    if answer.error is None:
        return answer.result or {}
    d = answer.details
    station, action = answer.station, str(d.get("action") or "")
    message = str(d.get("message", ""))
    error: Exception
    match answer.error:
        case "StationOffline":
            error = StationOffline(
                station=station, action=action or None, reason=d.get("reason", "")
            )
        case "StationBusy":
            error = StationBusy(station=station, action=action, limit=d.get("limit", 0))
        case "CallTooLarge":
            error = CallTooLarge(
                station=station, action=action, size=d.get("size", 0), limit=d.get("limit", 0)
            )
        case "CallTimeout":
            error = CallTimeout(station=station, action=action, timeout=d.get("timeout", 0.0))
        case "CallError":
            error = CallError(
                d.get("code", ""),
                d.get("description", ""),
                d.get("details"),
                station=station,
                action=action,
            )
        case "OutboundValidationError":
            error = OutboundValidationError(
                d.get("code", ""),
                d.get("description", ""),
                protocol=d.get("protocol", ""),
                action=action,
                kind=d.get("kind", ""),
            )
        case "UnsupportedUseCase":
            error = UnsupportedUseCase(message)
        case "InvalidUseCaseArguments":
            error = InvalidUseCaseArguments(message)
        case "PermissionError":
            error = PermissionError(message)
        case "ValueError":
            error = ValueError(message)
        case _:
            error = StoreUnavailable(f"node {answer.node!r} failed sending the command: {message}")
    raise error
