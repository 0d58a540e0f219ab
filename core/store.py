"""The event store: the ordered, durable log of domain events on SQLite, PostgreSQL or memory.

A :class:`Store` puts ``chargeledger.core.events`` straight through an eventsourcing
application recorder (``originator_id`` = stream id, text; ``originator_version`` = version in
the stream; notification id = global position). It deliberately bypasses
``eventsourcing.Application.save()``, whose runtime protocol checks halve throughput.

Every method is synchronous and may block on the database: call it from a worker thread
(``trio.to_thread.run_sync``) or from the group-commit writer's thread, never on the trio
thread. Failures surface as ``chargeledger.core.errors`` exceptions only: a stale stream
version raises :class:`StreamConflict`; anything else the database does wrong (server down,
file unwritable, lock timeout, store closed) raises :class:`StoreUnavailable`.

Backends: one :class:`StoreBackend` per kind of URL (:data:`BACKENDS`, found by
:func:`backend_for`) opens its eventsourcing recorder and says what differs (its fast row
select, whether reads wait on a server, which local file holds it); everything else is
:class:`Store`'s, the same on every backend. A new backend is one class and one entry there.

Tamper evidence: every event is stored chained to the previous event of its stream. The stored
state is ``0x01 | prev_hash (32 bytes) | hash (32 bytes) | event JSON`` where ``hash`` is
:func:`chain_hash` over ``prev_hash``, the stream, the version, the topic and the event JSON,
and ``prev_hash`` is the hash of the stream's previous event (:data:`GENESIS` for version 1).
:meth:`Store.append` computes it; ``chargeledger verify`` recomputes every chain.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

import psycopg
from eventsourcing.domain import EventSourcingError
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from eventsourcing.utils import retry
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from chargeledger.core.errors import StoreUnavailable, StreamConflict
from chargeledger.core.events import Event, Recorded, decode_event, encode_event

__all__ = [
    "BACKENDS",
    "EVENTS_TABLE",
    "GENESIS",
    "OpenedRecorder",
    "Store",
    "StoreBackend",
    "StoredRow",
    "backend_for",
    "chain_hash",
    "decode_row",
    "open_store",
    "postgres_connection",
    "postgres_lock_key",
    "postgres_pool",
    "postgres_schema",
    "probe_store",
    "unpack_state",
]

T = TypeVar("T")

# Seconds to wait for an SQLite write lock, a PostgreSQL table lock or a new connection.
_TIMEOUT = 5
# Seconds an operation waits for a connection from the PostgreSQL pool. The recorder retries
# connection errors 10 times, 0.2 s apart, so a PostgreSQL outage fails an operation after
# about 10 * (2 + 0.2) = 22 s: shorter outages (a restart, a fail-over) are ridden out.
_POOL_WAIT = 2
# psycopg_pool retries a lost connection with exponential backoff for this long (300 s by
# default, which can leave the pool empty for minutes after the server is back); once it
# gives up, the next request starts a fresh attempt at once.
_RECONNECT_WINDOW = 10

GENESIS = bytes(32)
"""The ``prev_hash`` of the first event of every stream."""

_CHAINED = b"\x01"  # first byte of a chained state; an unchained (older) one is JSON: b"{"
_HASH = 32
_BODY = 1 + 2 * _HASH
_LAST_ROWID = 2**63 - 1
_SQLITE_HEADER = b"SQLite format 3\x00"


def chain_hash(prev_hash: bytes, stream: str, version: int, topic: str, body: bytes) -> bytes:
    """The sha256 chaining an event to the previous event of its stream: over ``prev_hash``,
    the stream, the version, the topic and the event's JSON ``body``."""
    place = f"{stream}\x00{version}\x00{topic}\x00".encode()
    return hashlib.sha256(prev_hash + place + body).digest()


def unpack_state(state: bytes) -> tuple[bytes | None, bytes | None, bytes]:
    """``(prev_hash, hash, event JSON)`` of a stored state; both hashes are ``None`` for an
    unchained state (written before the chain existed, or forged without one)."""
    if state[:1] == _CHAINED and len(state) >= _BODY:
        return state[1 : 1 + _HASH], state[1 + _HASH : _BODY], state[_BODY:]
    return None, None, state


_Row = tuple[int, str, int, str, bytes]
"""position, stream, version, topic, state: an event as the database holds it."""


class StoredRow(NamedTuple):
    """An event as stored, undecoded (what ``chargeledger verify`` checks)."""

    position: int
    stream: str
    version: int
    topic: str
    state: bytes
    """The stored bytes: see :func:`unpack_state`."""


@dataclass(frozen=True)
class _PostgresTarget:
    dbname: str
    host: str
    port: int
    user: str
    password: str
    schema: str


def _parse_postgres(url: str) -> _PostgresTarget:
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"schema"}
    if unknown:
        raise ValueError(f"unknown store URL parameter(s) {sorted(unknown)} in {_redact(url)}")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ValueError(f"store URL {_redact(url)} names no database")
    return _PostgresTarget(
        dbname=dbname,
        host=parts.hostname or "localhost",
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        schema=(query.get("schema") or ["public"])[-1] or "public",
    )


def _redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _connect(target: _PostgresTarget) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        dbname=target.dbname,
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        connect_timeout=_TIMEOUT,
        autocommit=True,
    )


@contextmanager
def _translate(safe_url: str, what: str) -> Iterator[None]:
    """Turn the database layer's exceptions into ``chargeledger.core.errors`` ones."""
    try:
        yield
    except IntegrityError as exc:
        raise StreamConflict(f"{what} on {safe_url}: {exc}") from exc
    # The recorders wrap most driver errors in EventSourcingError, but not all of them
    # (connecting, closed pools), so the drivers' own base classes are caught too.
    except (EventSourcingError, sqlite3.Error, psycopg.Error, OSError) as exc:
        raise StoreUnavailable(f"{what} on {safe_url} failed: {exc}") from exc


class Store:
    """The event log behind one store URL; thread-safe, blocking (see the module docstring).

    Build it with :func:`open_store`.
    """

    def __init__(self, url: str, backend: StoreBackend, opened: OpenedRecorder) -> None:
        self.url = url
        self.backend = backend
        self._safe_url = _redact(url)
        self._recorder = opened.recorder
        self._select_rows = opened.select
        self._close = opened.close
        self._delete = opened.delete
        self._insert = opened.insert
        self._closed = False

    def __repr__(self) -> str:
        return f"Store({self._safe_url!r})"

    @property
    def safe_url(self) -> str:
        """``url`` without its password, for messages and reports."""
        return self._safe_url

    @property
    def remote(self) -> bool:
        """Whether reads wait on a database server (PostgreSQL), so that reading the next
        page while the current one is processed pays (for SQLite it does not: decoding
        holds the GIL): the backend's :attr:`StoreBackend.remote`."""
        return self.backend.remote

    def append(
        self, items: Sequence[tuple[str, int, Event]], heads: Mapping[str, bytes] | None = None
    ) -> list[Recorded]:
        """Commit ``(stream, version, event)`` items in one transaction, in order.

        Each event is chained to the previous one of its stream: ``heads`` may give the hash
        of the event before the first item of a stream (the writer knows them); for a stream
        it does not name, version 1 starts at :data:`GENESIS` and a later version looks up
        the stream's newest stored event. Returns the items as :class:`Recorded` with their
        hashes, positions ascending in the order given. Raises :class:`StreamConflict` when
        any version is already taken in its stream (or repeated in ``items``),
        :class:`StoreUnavailable` on any other failure; either way nothing of ``items`` is
        written (but see ``docs/write-path.md`` on a commit whose acknowledgement was lost).
        """
        if not items:
            return []
        chain = dict(heads or {})
        rows: list[tuple[str, int, str, bytes]] = []
        links: list[tuple[bytes, bytes]] = []
        for stream, version, event in items:
            topic, body = encode_event(event)
            prev = chain.get(stream)
            if prev is None:
                prev = GENESIS if version == 1 else self.stream_head(stream)[1]
            digest = chain[stream] = chain_hash(prev, stream, version, topic, body)
            rows.append((stream, version, topic, _CHAINED + prev + digest + body))
            links.append((prev, digest))
        positions = self._call("append", self._insert or self._insert_stored, rows)
        if positions is None or len(positions) != len(items):
            raise StoreUnavailable(f"{self._safe_url} did not report the positions of an append")
        return [
            Recorded(position, stream, version, event, hash=digest, prev_hash=prev)
            for position, (stream, version, event), (prev, digest) in zip(
                positions, items, links, strict=True
            )
        ]

    def read(self, after: int = 0, limit: int = 1000, stop: int | None = None) -> list[Recorded]:
        """Up to ``limit`` events with ``after < position <= stop``, in position order.

        Raises :class:`StoreUnavailable` when the store cannot be read, and ``KeyError`` or
        ``msgspec.DecodeError`` for an event this code cannot decode (a newer writer's topic,
        corrupted state): never skipped silently.
        """
        return [_recorded(*row) for row in self._select(after, limit, stop)]

    def read_rows(
        self, after: int = 0, limit: int = 1000, stop: int | None = None
    ) -> list[StoredRow]:
        """:meth:`read` without decoding: the stored rows as they are.

        Raises :class:`StoreUnavailable` when the store cannot be read.
        """
        return [StoredRow._make(row) for row in self._select(after, limit, stop)]

    def _select(self, after: int, limit: int, stop: int | None) -> list[_Row]:
        last = _LAST_ROWID if stop is None else stop
        return self._call("read", self._select_rows, after, last, limit)

    def iter_all(self, after: int = 0, page: int = 5000) -> Iterator[Recorded]:
        """Every event after ``after`` in position order, read ``page`` events at a time.

        Events committed while iterating are included as long as the iteration has not ended.
        Raises like :meth:`read`, possibly after yielding part of the log.
        """
        while True:
            batch = self.read(after, page)
            yield from batch
            if len(batch) < page:
                return
            after = batch[-1].position

    def read_stream(self, stream: str) -> list[tuple[int, Event]]:
        """The ``(version, event)`` pairs of ``stream``, oldest first (empty when unknown).

        Raises like :meth:`read`.
        """
        stored = self._call("read_stream", self._recorder.select_events, stream)
        return [(s.originator_version, _decode(s.topic, s.state)) for s in stored]

    def last_event(self, stream: str) -> tuple[int, Event] | None:
        """The newest ``(version, event)`` of ``stream``, ``None`` when it is empty.

        Raises like :meth:`read`.
        """
        last = self._last_stored(stream)
        if last is None:
            return None
        return last.originator_version, _decode(last.topic, last.state)

    def last_version(self, stream: str) -> int:
        """The version of the newest event of ``stream``; 0 when it is empty.

        Raises :class:`StoreUnavailable` when the store cannot be read.
        """
        last = self._last_stored(stream)
        return 0 if last is None else last.originator_version

    def stream_head(self, stream: str) -> tuple[int, bytes]:
        """The version and hash of the newest event of ``stream``: ``(0, GENESIS)`` when it
        is empty, :data:`GENESIS` as the hash of an unchained event.

        Raises :class:`StoreUnavailable` when the store cannot be read.
        """
        last = self._last_stored(stream)
        if last is None:
            return 0, GENESIS
        return last.originator_version, unpack_state(last.state)[1] or GENESIS

    def stream_tail(self, stream: str) -> tuple[int, bytes, str]:
        """:meth:`stream_head` and the topic of the newest event (empty when the stream is
        empty): what the writer looks up for a stream it meets, to refuse appending to a
        closed session (``SessionClosed``).

        Raises :class:`StoreUnavailable` when the store cannot be read.
        """
        last = self._last_stored(stream)
        if last is None:
            return 0, GENESIS, ""
        return last.originator_version, unpack_state(last.state)[1] or GENESIS, last.topic

    def max_position(self) -> int:
        """The position of the newest event; 0 for an empty store.

        Raises :class:`StoreUnavailable` when the store cannot be read.
        """
        return self._call("max_position", self._recorder.max_notification_id) or 0

    @property
    def deletes(self) -> bool:
        """Whether :meth:`delete_streams` works on this store (not on ``memory://``)."""
        return self._delete is not None

    def delete_streams(self, streams: Sequence[str], last: int, expected: int) -> None:
        """Delete, in one transaction, the events of ``streams`` at positions up to ``last``:
        what ``chargeledger archive`` does once they are safely in an archive file
        (:mod:`chargeledger.core.archive`). When the count deleted is not ``expected``
        (something changed them since they were read) nothing is deleted and
        :class:`StoreUnavailable` says so; ``ValueError`` for a store that cannot
        (``memory://``).
        """
        delete = self._delete
        if delete is None:
            raise ValueError(f"{self._safe_url} cannot delete archived events")

        try:
            self._call("delete", delete, streams, last, expected)
        except _Mismatch as exc:
            raise StoreUnavailable(f"delete on {self._safe_url}: {exc}: nothing deleted") from None

    def close(self) -> None:
        """Release connections; idempotent. Later calls raise :class:`StoreUnavailable`."""
        if not self._closed:
            self._closed = True
            self._close()

    def _insert_stored(self, rows: Sequence[tuple[str, int, str, bytes]]) -> Sequence[int] | None:
        """The recorder's own insert, for a backend with no ``insert`` of its own."""
        return self._recorder.insert_events([StoredEvent(*row) for row in rows])

    def _last_stored(self, stream: str) -> StoredEvent | None:
        stored = self._call(
            "last_event", lambda: self._recorder.select_events(stream, desc=True, limit=1)
        )
        return stored[0] if stored else None

    def _call(self, what: str, func: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise StoreUnavailable(f"{what} on {self._safe_url}: the store is closed")
        with _translate(self._safe_url, what):
            return func(*args)


class _Mismatch(Exception):
    """Raised inside a delete's transaction to roll it back."""


def _check_deleted(deleted: int, expected: int) -> None:
    if deleted != expected:
        raise _Mismatch(f"{deleted} events to delete, {expected} archived")


def decode_row(row: StoredRow) -> Recorded:
    """The event of a stored row (read from an archive, say), as :meth:`Store.read` gives
    it. Raises ``KeyError`` or ``msgspec.DecodeError`` for an event this code cannot decode."""
    return _recorded(*row)


def _decode(topic: str, state: bytes) -> Event:
    return decode_event(topic, unpack_state(state)[2])


def _recorded(position: int, stream: str, version: int, topic: str, state: bytes) -> Recorded:
    # unpack_state inlined: this runs once per event of every replay.
    if state[:1] == _CHAINED and len(state) >= _BODY:
        event = decode_event(topic, state[_BODY:])
        return Recorded(
            position, stream, version, event, state[1 + _HASH : _BODY], state[1 : 1 + _HASH]
        )
    return Recorded(position, stream, version, decode_event(topic, state))


class OpenedRecorder(NamedTuple):
    """What a :class:`StoreBackend` opened for one store URL."""

    recorder: ApplicationRecorder
    select: Callable[[int, int, int], list[_Row]]
    """``select(after, last, limit)``: up to ``limit`` rows with ``after < position <= last``
    in position order, as ``(position, stream, version, topic, state)`` tuples. Raises the
    database layer's errors (the store translates them)."""
    close: Callable[[], None]
    """Releases the connections; called once."""
    delete: Callable[[Sequence[str], int, int], None] | None = None
    """``delete(streams, last, expected)``: in one transaction, delete the events of
    ``streams`` with positions up to ``last``, rolled back (raising ``_Mismatch``) unless
    they were ``expected`` many; a backend without it cannot archive."""
    insert: Callable[[Sequence[tuple[str, int, str, bytes]]], Sequence[int]] | None = None
    """``insert(rows)``: insert the ``(stream, version, topic, state)`` rows in one
    transaction and return their positions in order, raising the database layer's errors
    (an ``IntegrityError`` for a taken version); without it the recorder's ``insert_events``
    does."""


class StoreBackend(ABC):
    """One kind of store: which URLs it serves and what differs from the others.

    Everything common (chaining, appends, stream reads, error translation) is in
    :class:`Store`, which runs on any eventsourcing application recorder. A backend only
    opens its recorder, reads rows fast (the recorders' own notification selects build a
    mapping and an object per event, which halves replay throughput), and says whether it
    waits on a server and which local file holds it.
    """

    prefixes: tuple[str, ...]
    """The URL prefixes this backend serves (matched in :data:`BACKENDS` order)."""
    form: str
    """The URL form, for messages: ``sqlite:///PATH``."""
    remote: bool = False
    """Whether reads wait on a database server, so that reading the next page while the
    current one is processed pays."""
    shared: bool = False
    """Whether several server processes (nodes) may share one store of this kind: each then
    follows the log (:mod:`chargeledger.core.follower`)."""

    @abstractmethod
    def open(self, url: str) -> OpenedRecorder:
        """Open (creating tables when missing) the store at ``url``, one of ``prefixes``.

        Raises ``ValueError`` for a URL of this backend it does not understand, the database
        layer's errors when the database cannot be reached or set up."""

    def file(self, url: str) -> Path | None:
        """The local file holding the store at ``url``; ``None`` when there is none (memory,
        a database server)."""
        return None

    @abstractmethod
    def probe(self, url: str) -> None:
        """Check, creating nothing, that :meth:`open` could open the store at ``url``: raises
        ``ValueError`` for a URL it does not understand, :class:`StoreUnavailable` saying why
        for a store it cannot reach, read or write."""


class _MemoryBackend(StoreBackend):
    """``memory://``: in this process only, gone when it ends (tests, demos)."""

    prefixes = ("memory://",)
    form = "memory://"

    def open(self, url: str) -> OpenedRecorder:
        self.probe(url)
        recorder = POPOApplicationRecorder()

        def select(after: int, last: int, limit: int) -> list[_Row]:
            notifications = recorder.select_notifications(
                after, limit, stop=last, inclusive_of_start=False
            )
            return [
                (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
                for n in notifications
            ]

        return OpenedRecorder(recorder, select, lambda: None)

    def probe(self, url: str) -> None:
        if url != "memory://":
            raise ValueError(f"a memory store URL is just memory://, not {url!r}")


class _SQLiteBackend(StoreBackend):
    """``sqlite:///PATH``: a file, in WAL mode so that other processes can read meanwhile."""

    prefixes = ("sqlite:///",)
    form = "sqlite:///PATH"

    def file(self, url: str) -> Path:
        return Path(url.removeprefix("sqlite:///"))

    def probe(self, url: str) -> None:
        """The file must be an SQLite database we may write, or be creatable; its directory
        must take new files (WAL mode keeps two beside it). A temporary file with no name
        (``O_TMPFILE``) tests that, where the file system allows; else a named one, removed."""
        path = self._path(url)
        if path.is_dir():
            raise StoreUnavailable(f"{path} is a directory, not a store file")
        if path.exists():
            try:
                with path.open("r+b") as file:  # opened for writing, nothing written
                    header = file.read(len(_SQLITE_HEADER))
            except OSError as exc:
                raise StoreUnavailable(f"cannot write {path}: {exc.strerror}") from exc
            if header and header != _SQLITE_HEADER:
                raise StoreUnavailable(f"{path} is not an SQLite database")
        directory = path.parent
        if not directory.is_dir():
            raise StoreUnavailable(f"the directory {directory} does not exist")
        try:
            tempfile.TemporaryFile(dir=directory).close()
        except OSError as exc:
            raise StoreUnavailable(f"cannot create files in {directory}: {exc.strerror}") from exc

    @staticmethod
    def _path(url: str) -> Path:
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ValueError(f"store URL {url!r} names no file")
        return Path(path)

    def open(self, url: str) -> OpenedRecorder:
        path = str(self._path(url))
        # eventsourcing opens SQLite with uri=True; a percent-quoted file: URI makes any path
        # (one containing '?', '#' or ':memory:', say) mean exactly that file.
        datastore = SQLiteDatastore(
            "file:" + quote(path), lock_timeout=_TIMEOUT, originator_id_type="text"
        )
        recorder = SQLiteApplicationRecorder(datastore)
        try:
            recorder.create_table()
        except BaseException:
            datastore.close()
            raise
        statement = (
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {recorder.events_table_name} "
            "WHERE rowid>? AND rowid<=? ORDER BY rowid LIMIT ?"
        )

        def select(after: int, last: int, limit: int) -> list[_Row]:
            with datastore.transaction(commit=False) as cursor:
                cursor.sqlite_cursor.row_factory = None
                cursor.execute(statement, (after, last, limit))
                return cast(list[_Row], cursor.fetchall())

        deletion = (
            f"DELETE FROM {recorder.events_table_name} "
            "WHERE originator_id IN (SELECT value FROM json_each(?)) AND rowid<=?"
        )

        def delete(streams: Sequence[str], last: int, expected: int) -> None:
            with datastore.transaction(commit=True) as cursor:
                cursor.execute(deletion, (json.dumps(list(streams)), last))
                _check_deleted(cursor.sqlite_cursor.rowcount, expected)

        # One executemany per commit: the recorder's insert_events runs one execute per row
        # to read each row's rowid (14.5 % of the server's CPU at saturation). Within the
        # write transaction SQLite gives each new row the largest rowid plus one (it picks
        # another only once a rowid reached 2**63-1), so the rows of a batch get the positions
        # up to last_insert_rowid(), contiguous, in item order.
        insertion = (
            f"INSERT INTO {recorder.events_table_name} "
            "(originator_id, originator_version, topic, state) VALUES (?,?,?,?)"
        )

        def insert(rows: Sequence[tuple[str, int, str, bytes]]) -> list[int]:
            with datastore.transaction(commit=True) as cursor:
                cursor.executemany(insertion, rows)
                cursor.execute("SELECT last_insert_rowid()")
                last = cursor.fetchone()[0]
            return list(range(last - len(rows) + 1, last + 1))

        return OpenedRecorder(recorder, select, datastore.close, delete, insert)


class _PostgresBackend(StoreBackend):
    """``postgresql://user[:password]@host[:port]/dbname[?schema=NAME]``: a schema of a
    PostgreSQL database that several processes may share."""

    prefixes = ("postgresql://", "postgres://")
    form = "postgresql://user@host:port/dbname"
    remote = True
    shared = True

    def probe(self, url: str) -> None:
        """Connect and ask the server one thing (``SELECT 1``); the schema is not made."""
        target = _parse_postgres(url)
        try:
            with _connect(target) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())  # psycopg's messages span lines
            raise StoreUnavailable(f"cannot use the database: {reason}") from exc

    def open(self, url: str) -> OpenedRecorder:
        target = _parse_postgres(url)
        datastore = PostgresDatastore(
            dbname=target.dbname,
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            schema=target.schema,
            connect_timeout=_POOL_WAIT,
            lock_timeout=_TIMEOUT,
            # The writer thread holds one connection per batch; readers (projections, API,
            # allocator) must not queue behind it.
            pool_size=2,
            max_overflow=8,
            originator_id_type="text",
        )
        # Not a PostgresDatastore parameter; the pool reads it only once opened (on first use).
        datastore.pool.reconnect_timeout = _RECONNECT_WINDOW
        # No server-side prepared statements: after an insert failed (a lock timeout, say),
        # psycopg believed a statement prepared in the failed pipeline existed, and every
        # later commit on that pooled connection failed with "prepared statement ... does not
        # exist": the writer never recovered without a restart (tests/test_outage.py).
        assert isinstance(datastore.pool.kwargs, dict)
        datastore.pool.kwargs["prepare_threshold"] = None
        try:
            # DDL of processes starting together races (CREATE ... IF NOT EXISTS is not atomic
            # against a concurrent CREATE): a session advisory lock per schema serializes it
            # and is released when this connection closes. The recorder is built inside too:
            # its constructor already looks up the schema's types.
            with _connect(target) as conn:
                conn.execute("SELECT pg_advisory_lock(%s)", (_ddl_lock_key(target.schema),))
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target.schema))
                )
                recorder = PostgresApplicationRecorder(datastore, events_table_name=EVENTS_TABLE)
                recorder.create_table()
        except BaseException:
            datastore.close()
            raise
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {}.{} WHERE notification_id>%s AND notification_id<=%s "
            "ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))

        # Retried like the recorder's own select (connection errors, 10 times, 0.2 s apart).
        @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
        def select(after: int, last: int, limit: int) -> list[_Row]:
            with (
                datastore.get_connection() as connection,
                connection.cursor(row_factory=tuple_row) as cursor,
            ):
                # Binary results: bytea arrives as bytes, not as hex text to decode.
                cursor.execute(query, (after, last, limit), prepare=True, binary=True)
                return cast(list[_Row], cursor.fetchall())

        deletion = sql.SQL(
            "DELETE FROM {}.{} WHERE originator_id = ANY(%s) AND notification_id<=%s"
        ).format(sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))

        def delete(streams: Sequence[str], last: int, expected: int) -> None:
            with datastore.transaction(commit=True) as cursor:
                cursor.execute(deletion, (list(streams), last))
                _check_deleted(cursor.rowcount, expected)

        return OpenedRecorder(recorder, select, datastore.close, delete)


EVENTS_TABLE = "stored_events"
"""The events table of a PostgreSQL store (the eventsourcing recorder's default)."""


def postgres_pool(url: str, max_size: int) -> ConnectionPool[psycopg.Connection[Any]]:
    """A pool of up to ``max_size`` autocommit connections to the database of the PostgreSQL
    store URL ``url`` whose statements wait at most the store's lock timeout for a lock (the
    recorder's reads wait forever while a table is locked). Opened; close it when done."""
    target = _parse_postgres(url)

    def configure(connection: psycopg.Connection[Any]) -> None:
        connection.execute(sql.SQL("SET lock_timeout = {}").format(f"{_TIMEOUT}s"))

    return ConnectionPool(
        kwargs={
            "dbname": target.dbname,
            "host": target.host,
            "port": target.port,
            "user": target.user,
            "password": target.password,
            "connect_timeout": _TIMEOUT,
            "autocommit": True,
        },
        min_size=1,
        max_size=max_size,
        timeout=_POOL_WAIT,
        reconnect_timeout=_RECONNECT_WINDOW,
        configure=configure,
        open=True,
    )


def _ddl_lock_key(schema: str) -> int:
    return postgres_lock_key("ddl", schema)


def postgres_lock_key(purpose: str, schema: str) -> int:
    """The advisory-lock key of ``purpose`` (``ddl``, ``leader``, ...) for ``schema``: a
    32-bit number, so ``pg_locks.objid`` shows it as is."""
    return zlib.crc32(f"chargeledger-{purpose}:{schema}".encode())


def postgres_schema(url: str) -> str:
    """The schema the PostgreSQL store URL ``url`` names (``public`` by default); raises
    ``ValueError`` for a URL :func:`open_store` would refuse."""
    return _parse_postgres(url).schema


def postgres_connection(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A new autocommit connection to the database of the PostgreSQL store URL ``url``, of
    its own (not the store's pool): for sessions that must outlive a query (``LISTEN``, a
    session advisory lock). Raises ``ValueError`` for a bad URL, ``psycopg.Error`` when the
    server cannot be reached."""
    return _connect(_parse_postgres(url))


BACKENDS: tuple[StoreBackend, ...] = (_MemoryBackend(), _SQLiteBackend(), _PostgresBackend())
"""Every kind of store, tried in order by :func:`backend_for`."""


def backend_for(url: str) -> StoreBackend:
    """The backend serving the store URL ``url``; ``ValueError`` when none does."""
    for backend in BACKENDS:
        if url.startswith(backend.prefixes):
            return backend
    forms = [backend.form for backend in BACKENDS]
    raise ValueError(
        f"unsupported store URL {_redact(url)!r}: expected {', '.join(forms[:-1])} or {forms[-1]}"
    )


def probe_store(url: str) -> None:
    """Check, creating nothing (no file, no schema, no table), that :func:`open_store` could
    open the store at ``url``: what ``chargeledger serve`` checks before it starts.

    Raises ``ValueError`` for a URL it does not understand, :class:`StoreUnavailable` naming
    the store and the reason when it cannot be reached, read or written.
    """
    backend = backend_for(url)
    try:
        backend.probe(url)
    except StoreUnavailable as exc:
        raise StoreUnavailable(f"store {_redact(url)}: {exc}") from exc


def open_store(url: str, *, create: bool = True) -> Store:
    """Open (creating tables, and the PostgreSQL schema, when missing) the store at ``url``.

    * ``memory://``: in this process only, gone when it ends (tests, demos).
    * ``sqlite:///PATH``: the file ``PATH`` relative to the working directory;
      ``sqlite:////abs/path`` for an absolute one. The path is taken literally (no
      percent-decoding, no query string). OpenedRecorder in WAL mode, so other processes (the CLI)
      can read while the server writes. The directory must exist.
    * ``postgresql://user[:password]@host[:port]/dbname[?schema=NAME]``: schema ``public``
      by default; user ``postgres``, host ``localhost``, port 5432 when left out. The user
      needs the right to create the schema's tables (done on open). Several processes may
      open the same schema at once.

    With ``create=False`` (readers), a store kept in a file that does not exist is refused
    with ``ValueError`` instead of created: a typo in the path would otherwise show an empty
    log instead of an error.

    Raises ``ValueError`` for a URL it does not understand, :class:`StoreUnavailable` when the
    database cannot be reached or set up.
    """
    backend = backend_for(url)
    if not create:
        path = backend.file(url)
        if path is not None and not path.exists():
            raise ValueError(f"no store at {url}")
    with _translate(_redact(url), "open"):
        opened = backend.open(url)
    return Store(url, backend, opened)
