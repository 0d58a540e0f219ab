"""Conformance of the event store, run against memory, SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from chargeledger.core.errors import StoreUnavailable, StreamConflict
from chargeledger.core.events import (
    CallTimedOut,
    Event,
    FrameLogged,
    SessionClosed,
    SessionOpened,
    TransactionIdsReserved,
)
from chargeledger.core.store import BACKENDS, Store, backend_for, open_store
from tests.postgres import drop_postgres_schema

__all__: list[str] = []


def frame(n: int, text: str = '[2,"1","Heartbeat",{}]') -> FrameLogged:
    return FrameLogged(
        station="CP-1", session="s1", at=1_700_000_000.0 + n, direction="in", text=text
    )


def test_append_returns_positions_in_order_and_read_sees_the_same(store: Store) -> None:
    first = store.append([("a", 1, frame(1)), ("b", 1, frame(2)), ("a", 2, frame(3))])
    second = store.append([("b", 2, frame(4))])

    recorded = first + second
    positions = [r.position for r in recorded]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert [(r.stream, r.version) for r in recorded] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert store.read() == recorded
    assert store.read(after=positions[1]) == recorded[2:]
    assert store.read(after=0, limit=2) == recorded[:2]
    assert store.read(after=0, stop=positions[2]) == recorded[:3]
    assert store.max_position() == positions[-1]


def test_stream_versions(store: Store) -> None:
    assert store.last_version("a") == 0
    assert store.last_event("a") is None
    assert store.read_stream("a") == []
    store.append([("a", 1, frame(1)), ("a", 2, frame(2)), ("b", 1, frame(3))])
    assert store.last_version("a") == 2
    assert store.last_event("a") == (2, frame(2))
    assert store.read_stream("a") == [(1, frame(1)), (2, frame(2))]
    assert store.read_stream("b") == [(1, frame(3))]


def test_empty_store(store: Store) -> None:
    assert store.max_position() == 0
    assert store.read() == []
    assert list(store.iter_all()) == []
    assert store.append([]) == []


@pytest.mark.parametrize(
    "batch",
    [
        [("fresh", 1, frame(2)), ("a", 1, frame(3))],  # stale version of an existing stream
        [("fresh", 1, frame(2)), ("fresh", 1, frame(3))],  # one version twice in a batch
    ],
)
def test_conflict_writes_nothing_of_the_batch(
    store: Store, batch: list[tuple[str, int, Event]]
) -> None:
    store.append([("a", 1, frame(1))])
    with pytest.raises(StreamConflict):
        store.append(batch)
    assert store.last_version("fresh") == 0
    assert [r.stream for r in store.read()] == ["a"]
    # The store is still usable, and positions keep increasing (PostgreSQL may leave a gap).
    [later] = store.append([("fresh", 1, frame(4))])
    assert later.position > 1


def test_each_append_takes_contiguous_positions_in_item_order(store: Store) -> None:
    """One insert per commit still numbers the rows as the items come: ascending in item
    order, contiguous within an append, after every earlier append; and a conflict anywhere
    in a large batch writes nothing of it."""
    sizes = [1, 7, 250, 2, 40]
    versions: dict[str, int] = {}
    appended: list[list[int]] = []
    n = 0
    for size in sizes:
        items: list[tuple[str, int, Event]] = []
        for _ in range(size):
            stream = f"s{n % 5}"  # streams interleaved within the batch
            versions[stream] = versions.get(stream, 0) + 1
            items.append((stream, versions[stream], frame(n)))
            n += 1
        recorded = store.append(items)
        assert [(r.stream, r.version, r.event) for r in recorded] == items
        positions = [r.position for r in recorded]
        assert positions == list(range(positions[0], positions[0] + size))
        assert not appended or positions[0] > appended[-1][-1]
        appended.append(positions)
    assert [r.position for r in store.read(limit=1000)] == [p for ps in appended for p in ps]

    stale = [(f"new{i}", 1, frame(i)) for i in range(99)] + [("s0", 1, frame(99))]
    with pytest.raises(StreamConflict):
        store.append(stale)
    assert store.max_position() == appended[-1][-1]
    assert store.last_version("new0") == 0 and store.last_version("new98") == 0
    after = store.append([("new0", 1, frame(1)), ("new1", 1, frame(2))])
    assert after[1].position == after[0].position + 1 > appended[-1][-1]


def test_sqlite_store_is_wal_with_full_sync(tmp_path: Path) -> None:
    """Durable before the reply: every commit is on disk when it returns (``synchronous`` 2,
    FULL, on the store's own connection), and readers run beside the writer (WAL)."""
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        store.append([("a", 1, frame(1))])
        datastore = store._recorder.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=True) as cursor:
            cursor.execute("PRAGMA synchronous")
            assert cursor.fetchone()[0] == 2
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
    finally:
        store.close()


def test_iter_all_pages_through_everything(store: Store) -> None:
    for n in range(0, 23, 5):
        store.append([("a", v + 1, frame(v)) for v in range(n, min(n + 5, 23))])
    everything = store.read(limit=100)
    assert len(everything) == 23
    assert list(store.iter_all(page=5)) == everything  # 23 = 4 full pages + 3
    assert list(store.iter_all(page=23)) == everything  # a full last page, then an empty one
    assert list(store.iter_all(after=everything[10].position, page=4)) == everything[11:]


def test_events_round_trip_exactly(store: Store) -> None:
    text = (
        '[2,"ü-1","DataTransfer",{"data":"snow ☃, car 🚗, zh 充电, rtl שלום, \\u0000 \u2028"}]\x00'
    )
    events: list[Event] = [
        SessionOpened(
            station="CP/ä", session="s1", at=1.5, protocol="ocpp1.6", offered=["ocpp1.6"]
        ),
        frame(1, text),
        FrameLogged(
            station="CP",
            session="s1",
            at=2.25,
            direction="in",
            text="",
            binary="AAEC/w==",
            note="malformed",
        ),
        CallTimedOut(station="CP", session="s1", at=3.0, message_id="m-1", action="Reset"),
        SessionClosed(station="CP", session="s1", at=4.0, code=1006, reason="gone ✗"),
        TransactionIdsReserved(first=1, last=100, at=5.0, node="node-1"),
    ]
    recorded = store.append([("s", n + 1, e) for n, e in enumerate(events)])
    assert [r.event for r in store.read()] == events
    assert [e for _, e in store.read_stream("s")] == events
    assert [r.event for r in recorded] == events
    read_text = store.read_stream("s")[1][1]
    assert isinstance(read_text, FrameLogged) and read_text.text == text


def test_closed_store_raises_store_unavailable(store_url: str) -> None:
    store = open_store(store_url)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        store.max_position()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://x/y",
        "sqlite:///",
        "memory://x",
        "postgresql://h/db?schema=s&bogus=1",
        "postgresql://h/?schema=s",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_unreachable_sqlite_file_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{tmp_path}/no/such/dir/events.db")


def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data?#odd.db")
    store.append([("a", 1, frame(1))])
    store.close()
    assert (tmp_path / "data?#odd.db").is_file()


def test_sqlite_reads_while_another_connection_writes(tmp_path: Path) -> None:
    """WAL mode: a reader (the CLI, another process) is never blocked by the server writing."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    server, cli = open_store(url), open_store(url)
    try:
        server.append([("a", 1, frame(1))])
        with sqlite3.connect(tmp_path / "events.db") as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

        # A write transaction left open by another connection does not block reads.
        raw = sqlite3.connect(tmp_path / "events.db", isolation_level=None, timeout=0.1)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO stored_events VALUES ('x', 1, 'FrameLogged', x'7b7d')")
        assert [r.stream for r in cli.read()] == ["a"]  # the uncommitted row is not seen
        raw.execute("ROLLBACK")
        raw.close()

        # Reads during a stream of commits always see a gap-free prefix of the log.
        stop = threading.Event()

        def write() -> None:
            for v in range(2, 300):
                server.append([("a", v, frame(v))])
            stop.set()

        writer = threading.Thread(target=write)
        writer.start()
        while not stop.is_set():
            versions = [r.version for r in cli.read(limit=1000)]
            assert versions == list(range(1, len(versions) + 1))
        writer.join()
        assert cli.last_version("a") == 299
    finally:
        server.close()
        cli.close()


def test_each_url_has_one_backend_that_says_how_it_differs(store_url: str) -> None:
    backend = backend_for(store_url)
    assert [b for b in BACKENDS if store_url.startswith(b.prefixes)] == [backend]
    store = open_store(store_url)
    try:
        assert store.backend is backend
        assert store.remote == store_url.startswith("postgresql://")
    finally:
        store.close()
    file = backend.file(store_url)
    if store_url.startswith("sqlite:///"):
        assert file is not None and file.is_file()
    else:
        assert file is None


def test_unsupported_url_names_every_form() -> None:
    with pytest.raises(ValueError, match="expected memory://, sqlite:///PATH or postgresql://"):
        backend_for("mysql://x/y")


def test_a_reader_never_creates_a_store_file(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(ValueError, match="no store at"):
        open_store(missing, create=False)
    assert not (tmp_path / "typo.db").exists()
    open_store(missing).close()  # a writer creates it
    open_store(missing, create=False).close()  # and now a reader finds it
    open_store("memory://", create=False).close()  # nothing to find: opens as ever


@pytest.mark.postgres
def test_drop_postgres_schema_drops_the_scratch_schema_only(postgres_url: str) -> None:
    store = open_store(postgres_url)  # creates the schema
    store.append([("a", 1, frame(1))])
    store.close()
    drop_postgres_schema(postgres_url)
    store = open_store(postgres_url)  # recreated, empty
    try:
        assert store.max_position() == 0
    finally:
        store.close()
    base = postgres_url.split("?")[0]
    with pytest.raises(ValueError, match="public"):
        drop_postgres_schema(base)
    with pytest.raises(ValueError, match="public"):
        drop_postgres_schema(base + "?schema=public")
    with pytest.raises(ValueError, match="not a PostgreSQL"):
        drop_postgres_schema("sqlite:///x.db")
