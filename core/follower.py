"""Following the log: on a PostgreSQL store every node folds every node's events, in order.

A node of a fleet sharing one PostgreSQL schema commits its own events through its
group-commit writer, and the other nodes' events land in the same table meanwhile. The
:class:`LogFollower` folds all of them into the node's projections in global position order:

* **Own commits** reach it from the writer (:meth:`LogFollower.offer`, the writer's
  ``on_commit``). A batch whose first position follows the last one folded is folded at once;
  otherwise the events between (other nodes', or a reservation of transaction ids) are read
  from the store first, then the batch is folded.
* **Other nodes' commits** are read from the store after the last position folded, woken by
  PostgreSQL ``LISTEN/NOTIFY``: a statement trigger on the events table sends, on the
  schema's channel (:func:`notify_channel`), the newest position of every insert, delivered
  when that insert commits. A notification for a position folded already (the node's own
  commit) costs nothing. The log is the truth: a missed notification (the listening
  connection lost, say) is caught up by a read every ``poll_interval`` seconds.

Positions appear in commit order: eventsourcing's PostgreSQL recorder takes ``LOCK TABLE ...
IN EXCLUSIVE MODE`` in every inserting transaction before the sequence hands out its
positions (``PostgresApplicationRecorder._lock_table``), so a transaction gets its positions
only once every earlier inserter has committed (or rolled back, leaving a hole). A read that
returns position *p* has therefore seen every event before *p*: folding in position order
never skips one.

:class:`FollowingWriter` keeps the writer's promise on such a node: by the time an
``append`` returns, the projections contain its events (it waits until the follower has
folded up to them). On SQLite and memory stores (one node) none of this runs: the writer
hands its batches to the dispatcher directly, as before.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import psycopg
import trio
from psycopg import sql

from chargeledger.core.errors import StoreUnavailable
from chargeledger.core.events import Event, Recorded
from chargeledger.core.store import (
    Store,
    postgres_connection,
    postgres_lock_key,
    postgres_schema,
)
from chargeledger.core.writer import GroupCommitWriter

__all__ = [
    "FOLLOW_TIMEOUT",
    "POLL_INTERVAL",
    "FollowingWriter",
    "LogFollower",
    "notify_channel",
    "prepare_cluster_tables",
]

log = logging.getLogger("chargeledger.follower")

POLL_INTERVAL = 1.0
"""Seconds between reads of the log when no notification woke the follower: the bound of
the view lag when notifications are lost."""

FOLLOW_TIMEOUT = 30.0
"""Seconds an ``append`` of a :class:`FollowingWriter` waits for its events to be folded
once committed (the follower cannot read the store meanwhile) before it raises
``StoreUnavailable``, as for a lost acknowledgement: the events are in the log."""

_PAGE = 1000
_RETRY = 1.0
_EVENTS_TABLE = "stored_events"  # eventsourcing's default, which open_store uses
_POSITIONS_TABLE = "chargeledger_positions"
_AUDIT_TABLE = "chargeledger_audit"


def notify_channel(schema: str) -> str:
    """The ``LISTEN/NOTIFY`` channel of the store in ``schema`` (channels are database-wide,
    so each schema has its own, short enough for any schema name)."""
    return f"chargeledger_{postgres_lock_key('notify', schema):08x}"


def prepare_cluster_tables(url: str) -> None:
    """Create, when missing, what nodes sharing the PostgreSQL store ``url`` need beside the
    events: the notify trigger, the table of tracked positions (``chargeledger_positions``:
    the reactions' position, see :mod:`chargeledger.core.cluster`) and the worker's audit
    findings (``chargeledger_audit``). Idempotent; serialised
    with the store's own DDL by the per-schema advisory lock. Blocking; raises
    ``StoreUnavailable``."""
    schema = postgres_schema(url)
    function = sql.Identifier(schema, "chargeledger_notify")
    table = sql.Identifier(schema, _EVENTS_TABLE)
    statements = [
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM pg_notify(TG_ARGV[0], (SELECT max(notification_id) FROM inserted)::text); "
            "RETURN NULL; END $$"
        ).format(function),
        # Created once (a trigger's creation locks the table against inserts, briefly).
        sql.SQL(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = "
            "'chargeledger_notify' AND tgrelid = to_regclass(format('%I.%I', {}, {}))) THEN "
            "CREATE TRIGGER chargeledger_notify AFTER INSERT ON {} "
            "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {}({}); "
            "END IF; END $$"
        ).format(
            sql.Literal(schema),
            sql.Literal(_EVENTS_TABLE),
            table,
            function,
            sql.Literal(notify_channel(schema)),
        ),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL, "
            "node text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(schema, _POSITIONS_TABLE)),
        # The worker's audit findings (one row: see chargeledger.core.cluster.AuditTable).
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id boolean PRIMARY KEY DEFAULT true CHECK (id), "
            "position bigint NOT NULL, node text NOT NULL, at timestamptz NOT NULL DEFAULT now(), "
            "findings jsonb NOT NULL)"
        ).format(sql.Identifier(schema, _AUDIT_TABLE)),
    ]
    try:
        with postgres_connection(url) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (postgres_lock_key("ddl", schema),))
            for statement in statements:
                conn.execute(statement)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot prepare the cluster tables: {exc}") from exc


class LogFollower:
    """Folds every committed event of the store, in position order, through ``fold``.

    ``fold(events)`` gets each run of events once, positions ascending, on the trio thread;
    ``position`` is where it starts (the views were folded up to there). Run :meth:`run` in
    a nursery (``await nursery.start(follower.run)``) before anything is appended.
    """

    def __init__(
        self,
        store: Store,
        fold: Callable[[list[Recorded]], None],
        position: int,
        *,
        poll_interval: float = POLL_INTERVAL,
        page: int = _PAGE,
    ) -> None:
        self._store = store
        self._fold = fold
        self.position = position
        """Every event up to here is folded (holes of the sequence included)."""
        self._poll_interval = poll_interval
        self._page = page
        self._held: deque[list[Recorded]] = deque()
        self._wake = trio.Event()
        self._folded = trio.Event()
        self._stopped = False
        self.notifications = 0
        """Notifications received (for metrics and tests)."""

    # -- own commits ------------------------------------------------------------------------

    def offer(self, batch: list[Recorded]) -> None:
        """Take a batch this process committed (the writer's ``on_commit``, trio thread)."""
        if not batch:
            return
        if not self._held and batch[0].position == self.position + 1:
            self._apply(batch)
        else:
            self._held.append(batch)
            self._wake.set()

    async def wait_folded(self, position: int, timeout: float = FOLLOW_TIMEOUT) -> None:
        """Return once everything up to ``position`` is folded; ``StoreUnavailable`` after
        ``timeout`` seconds. Returns at once when the follower has stopped (a server shutting
        down: its last appends are committed, nobody reads the projections any more)."""
        if self.position >= position or self._stopped:
            return  # folded already, as nearly always: no cancel scope to set up
        with trio.move_on_after(timeout):
            while self.position < position and not self._stopped:
                await self._folded.wait()
            return
        raise StoreUnavailable(
            f"position {position} is committed but was not folded within {timeout:g} s"
        )

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for notifications and fold what they announce (and what a poll finds)
        until cancelled. Raises ``StoreUnavailable`` when the trigger cannot be created."""
        url = self._store.url
        await trio.to_thread.run_sync(prepare_cluster_tables, url)
        stop = threading.Event()
        token = trio.lowlevel.current_trio_token()
        listener = threading.Thread(
            target=self._listen, args=(url, token, stop), name="log-follower", daemon=True
        )
        listener.start()
        try:
            await self._catch_up_logged()
            task_status.started()
            while True:
                with trio.move_on_after(self._poll_interval):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self._catch_up_logged()
        finally:
            self._stopped = True
            self._folded.set()
            stop.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(listener.join)

    async def _catch_up_logged(self) -> None:
        try:
            await self.catch_up()
        except StoreUnavailable as exc:
            log.warning("following the log: %s", exc)
            await trio.sleep(_RETRY)
            self._wake.set()

    async def catch_up(self) -> None:
        """Fold what is committed and not folded yet: the events before each own batch
        held, the batch, then whatever else the store holds. Raises ``StoreUnavailable``."""
        while True:
            if self._held:
                first = self._held[0]
                if first[-1].position <= self.position:
                    self._held.popleft()
                elif first[0].position > self.position + 1:
                    gap = await self._read(self.position, first[0].position - 1)
                    self._apply(gap)
                    if len(gap) < self._page:  # the whole gap is folded: on to the batch
                        self._through(first[0].position - 1)
                else:
                    self._held.popleft()
                    self._apply(first)
                continue
            events = await self._read(self.position, None)
            self._apply(events)
            if len(events) < self._page:
                return

    async def _read(self, after: int, stop: int | None) -> list[Recorded]:
        return await trio.to_thread.run_sync(self._store.read, after, self._page, stop)

    def _apply(self, events: Sequence[Recorded]) -> None:
        """Fold ``events`` (a complete run of the log from before ``position``) past
        ``position``, and wake the waiters."""
        fresh = [recorded for recorded in events if recorded.position > self.position]
        if not fresh:
            return
        try:
            self._fold(fresh)
        except Exception:
            log.exception("folding positions %d-%d failed", fresh[0].position, fresh[-1].position)
        self._through(fresh[-1].position)

    def _through(self, position: int) -> None:
        if position > self.position:
            self.position = position
            self._folded.set()
            self._folded = trio.Event()

    def _notified(self, position: int) -> None:
        self.notifications += 1
        if position == 0 or position > self.position:
            self._wake.set()

    def _listen(self, url: str, token: trio.lowlevel.TrioToken, stop: threading.Event) -> None:
        """The listening thread: one connection of its own, reconnected when lost."""
        channel = sql.Identifier(notify_channel(postgres_schema(url)))
        while not stop.is_set():
            try:
                with postgres_connection(url) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(channel))
                    token.run_sync_soon(self._notified, 0)  # read what came before LISTEN
                    while not stop.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            payload = notify.payload
                            token.run_sync_soon(
                                self._notified, int(payload) if payload.isdigit() else 0
                            )
            except (psycopg.Error, OSError) as exc:
                log.warning("listening for new events: %s (polling meanwhile)", exc)
                stop.wait(_RETRY)
            except trio.RunFinishedError:
                return


class FollowingWriter(GroupCommitWriter):
    """The group-commit writer of a node following the log: its batches go to the follower
    (and to ``count``, for the feed's counters of this process's commits), and ``append``
    returns once the follower has folded them, so a session resuming after its append finds
    its events in the projections, as with a plain writer."""

    def __init__(
        self,
        store: Store,
        follower: LogFollower,
        count: Callable[[list[Recorded]], None],
        max_batch: int = 1000,
    ) -> None:
        def on_commit(batch: list[Recorded]) -> None:
            count(batch)
            follower.offer(batch)

        super().__init__(store, on_commit=on_commit, max_batch=max_batch)
        self._follower = follower

    async def append(
        self,
        events: Sequence[tuple[str, Event]],
        *,
        new_stream: bool = False,
        versions: Mapping[str, int] | None = None,
    ) -> list[Recorded]:
        """:meth:`GroupCommitWriter.append`, returning once the events are folded too."""
        recorded = await super().append(events, new_stream=new_stream, versions=versions)
        if recorded:
            await self._follower.wait_folded(recorded[-1].position)
        return recorded
