"""Retention: move whole closed session streams out of the store into archive files, and read
the log back as archives plus store.

An archive is a JSON Lines file (gzip-compressed when its name ends in ``.gz``): a header
line, then one line per event in position order, each the event exactly as stored::

    {"format": "chargeledger-archive", "version": 1, "before": "2026-01-01T00:00:00.000Z", ...}
    {"position": 17, "stream": "session:…", "version": 1, "topic": "…SessionOpened",
     "prev_hash": "00…", "hash": "9f…", "body": "{\\"station\\":\\"CP-1\\",…}"}

``body`` is the event's stored JSON text byte for byte and the hashes are the store's
(:func:`chargeledger.core.store.chain_hash`), so ``chargeledger verify --archive`` checks
archived streams with the same chain as live ones, and every reader of the log (``serve``
with ``archives``, ``replay``, ``audit``, ``verify`` with ``--archive``) folds archive and
store merged by position: the projections come out exactly as before archiving.

What is archived (:func:`archivable`): only session streams (``session:…``), and only whole
ones that are over: a session that was opened and recorded closed, or a refused handshake
(its stream is that one event), every event of it before the cut. Never a session still
open, never part of a stream. Not archived: the allocator's stream (its next version is an
optimistic-concurrency write: taking it away would let an old version be written again),
token, tariff, registry, site, local-list, firmware-campaign, command, timer and OCSP
streams: they are small, and their latest events are what the running decisions use. Session
streams are what grows (every frame of every station: docs/operations.md, Retention).

The newest event of the store is never deleted: SQLite would give its position to the next
event written, and positions are what archives and store are merged by.
"""

from __future__ import annotations

import gzip
import heapq
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

import msgspec

from chargeledger.core.errors import StoreUnavailable
from chargeledger.core.events import HandshakeRejected, Recorded, SessionClosed
from chargeledger.core.store import Store, StoredRow, decode_row, unpack_state
from chargeledger.core.times import rfc3339

__all__ = [
    "ARCHIVE_FORMAT",
    "ArchiveHeader",
    "ArchiveLine",
    "ArchiveResult",
    "ArchivedLog",
    "Selection",
    "archivable",
    "archive_before",
    "merged_events",
    "merged_rows",
    "read_archive",
]

ARCHIVE_FORMAT = "chargeledger-archive"
_VERSION = 1
_PAGE = 5000
_SESSION = "session:"


class ArchiveHeader(msgspec.Struct, frozen=True, kw_only=True):
    """The first line of an archive: what it holds."""

    format: str
    version: int
    before: str
    """The cut: every event archived happened before it (RFC 3339)."""
    created_at: str
    store: str
    """The store it was taken from (without password)."""
    streams: int
    events: int
    first_position: int
    last_position: int


class ArchiveLine(msgspec.Struct, frozen=True, kw_only=True):
    """One archived event, as stored: hashes in hex, ``body`` the event's JSON text."""

    position: int
    stream: str
    version: int
    topic: str
    prev_hash: str | None
    hash: str | None
    body: str


class ArchiveResult(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`archive_before` did."""

    path: str
    streams: int
    events: int
    kept_open: int
    """Session streams left in the store because they are open or reach past the cut."""


_encode = msgspec.json.Encoder().encode
_decode_line = msgspec.json.Decoder(ArchiveLine).decode
_decode_header = msgspec.json.Decoder(ArchiveHeader).decode


def _open(path: Path, mode: str, gz: bool | None = None) -> IO[bytes]:
    if path.suffix == ".gz" if gz is None else gz:
        return gzip.open(path, mode + "b")  # type: ignore[return-value]
    return open(path, mode + "b")


class Selection(NamedTuple):
    """What :func:`archivable` chose: the streams, how many events they hold and where the
    first and last of them are, and how many session streams it kept."""

    streams: frozenset[str]
    events: int
    first_position: int
    last_position: int
    kept: int
    """Session streams left in the store: open, reaching past the cut, or holding the
    newest event."""


def archivable(store: Store, before: float, stop: int) -> Selection:
    """The session streams of ``store`` (positions up to ``stop``) that are over before
    ``before`` (UNIX seconds): opened and closed, or a refused handshake, every event earlier
    than the cut. The stream holding position ``stop`` is kept too (see the module
    docstring). One pass over the log; what it keeps per session stream is a few numbers."""
    over: dict[str, bool] = {}
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    late: set[str] = set()
    newest = ""
    after = 0
    while after < stop:
        page = store.read(after, _PAGE, stop)
        if not page:
            break
        for recorded in page:
            stream, event = recorded.stream, recorded.event
            if not stream.startswith(_SESSION):
                continue
            if getattr(event, "at", before) >= before:
                late.add(stream)
            if isinstance(event, SessionClosed | HandshakeRejected):
                over[stream] = True
            else:
                over.setdefault(stream, False)
            counts[stream] = counts.get(stream, 0) + 1
            first.setdefault(stream, recorded.position)
            last[stream] = recorded.position
        after = page[-1].position
        if after == stop:
            newest = page[-1].stream
    chosen = frozenset(
        stream for stream, done in over.items() if done and stream not in late and stream != newest
    )
    return Selection(
        streams=chosen,
        events=sum(counts[stream] for stream in chosen),
        first_position=min((first[stream] for stream in chosen), default=0),
        last_position=max((last[stream] for stream in chosen), default=0),
        kept=len(over) - len(chosen),
    )


def _line(row: StoredRow) -> ArchiveLine:
    prev, digest, body = unpack_state(row.state)
    return ArchiveLine(
        position=row.position,
        stream=row.stream,
        version=row.version,
        topic=row.topic,
        prev_hash=None if prev is None else prev.hex(),
        hash=None if digest is None else digest.hex(),
        body=body.decode(),
    )


def _row(line: ArchiveLine) -> StoredRow:
    body = line.body.encode()
    if line.hash is None or line.prev_hash is None:
        state = body
    else:
        state = b"\x01" + bytes.fromhex(line.prev_hash) + bytes.fromhex(line.hash) + body
    return StoredRow(line.position, line.stream, line.version, line.topic, state)


def archive_before(store: Store, before: float, path: Path) -> ArchiveResult:
    """Write the session streams that are over before ``before`` to a new archive at
    ``path``, then delete them from ``store`` in one transaction.

    The file is written under a temporary name, flushed to disk and renamed before anything
    is deleted; when the deletion fails (the store is down, the events changed meanwhile),
    nothing is deleted and the archive is removed again, so the events are in exactly one
    place. Raises ``FileExistsError`` when ``path`` exists, ``ValueError`` for a store that
    cannot delete (``memory://``) or a cut in the future, :class:`StoreUnavailable` when the
    store fails or the chosen streams changed between its two reads of the log (no file is
    left, nothing deleted). With nothing to archive, no file is written. The log is read
    twice (choose, then copy), a page at a time: memory holds a few numbers per session
    stream, never the events.
    """
    if path.exists():
        raise FileExistsError(f"{path} exists: an archive is never overwritten")
    if before > time.time():
        raise ValueError(f"the cut {rfc3339(before)} is in the future")
    if not store.deletes:
        raise ValueError(f"{store.safe_url} cannot delete what it would archive")
    stop = store.max_position()
    chosen = archivable(store, before, stop)
    if not chosen.streams:
        return ArchiveResult(path=str(path), streams=0, events=0, kept_open=chosen.kept)
    header = ArchiveHeader(
        format=ARCHIVE_FORMAT,
        version=_VERSION,
        before=rfc3339(before),
        created_at=rfc3339(time.time()),
        store=store.safe_url,
        streams=len(chosen.streams),
        events=chosen.events,
        first_position=chosen.first_position,
        last_position=chosen.last_position,
    )
    partial = path.with_name(path.name + ".partial")
    try:
        written = 0
        with _open(partial, "x", gz=path.suffix == ".gz") as file:
            file.write(_encode(header) + b"\n")
            for page in _row_pages(store, stop):  # streamed: an archive may be large
                for row in page:
                    if row.stream in chosen.streams:
                        file.write(_encode(_line(row)) + b"\n")
                        written += 1
        if written != chosen.events:  # a stream changed between the two reads
            raise StoreUnavailable(
                f"{store.safe_url} changed while archiving ({written} events read, "
                f"{chosen.events} counted): nothing deleted; run it again"
            )
        _fsync(partial)
        partial.rename(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        store.delete_streams(sorted(chosen.streams), stop, chosen.events)
    except BaseException:
        path.unlink()
        raise
    return ArchiveResult(
        path=str(path), streams=len(chosen.streams), events=chosen.events, kept_open=chosen.kept
    )


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _row_pages(store: Store, stop: int) -> Iterator[list[StoredRow]]:
    after = 0
    while after < stop:
        page = store.read_rows(after, _PAGE, stop)
        if not page:
            return
        yield page
        after = page[-1].position


def read_archive(path: Path) -> tuple[ArchiveHeader, Iterator[StoredRow]]:
    """The header of the archive at ``path`` and its events, as stored, in position order.

    Raises ``ValueError`` naming the file and line for a file that is not an archive, a
    malformed line, positions out of order, or fewer or more events than the header says
    (a truncated copy); ``OSError`` when it cannot be read. The events are read lazily: the
    errors of later lines come while iterating."""
    file = _open(path, "r")
    try:
        first = file.readline()
        header = _decode_header(first)
    except (msgspec.DecodeError, OSError, EOFError) as exc:
        file.close()
        raise ValueError(f"{path}: not a ChargeLedger archive ({exc})") from None
    if header.format != ARCHIVE_FORMAT or header.version != _VERSION:
        file.close()
        raise ValueError(f"{path}: not a ChargeLedger archive of version {_VERSION}")

    def rows() -> Iterator[StoredRow]:
        count, last = 0, 0
        with file:
            for number, text in enumerate(file, start=2):
                try:
                    line = _decode_line(text)
                except msgspec.DecodeError as exc:
                    raise ValueError(f"{path}:{number}: {exc}") from None
                if line.position <= last:
                    raise ValueError(f"{path}:{number}: position {line.position} out of order")
                count, last = count + 1, line.position
                yield _row(line)
        if count != header.events:
            raise ValueError(f"{path}: {count} events, the header says {header.events}")

    return header, rows()


_P = TypeVar("_P", StoredRow, Recorded)


def _merge(sources: Sequence[Iterable[_P]]) -> Iterator[_P]:
    last = 0
    for item in heapq.merge(*sources, key=attrgetter("position")):
        if item.position == last:
            raise ValueError(
                f"position {item.position} is in two of the inputs (an archive given twice, "
                "or one restored into the store?)"
            )
        last = item.position
        yield item


def merged_rows(archives: Sequence[Path], store_rows: Iterable[StoredRow]) -> Iterator[StoredRow]:
    """The rows of ``archives`` and ``store_rows`` (each in position order) merged into one
    log in position order. Raises ``ValueError`` when an archive is malformed (see
    :func:`read_archive`) or holds a position the store or another archive holds too (the
    same archive given twice, or a copy restored into the store)."""
    if not archives:  # the common case: the store alone, nothing to merge or check
        return iter(store_rows)
    return _merge([*(read_archive(path)[1] for path in archives), store_rows])


def merged_events(archives: Sequence[Path], store_events: Iterable[Recorded]) -> Iterator[Recorded]:
    """:func:`merged_rows` decoded: the events of ``archives`` and ``store_events`` in
    position order (what replay, audit and a starting server fold)."""
    if not archives:
        return iter(store_events)
    archived = [map(decode_row, read_archive(path)[1]) for path in archives]
    return _merge([*archived, store_events])


class ArchivedLog:
    """The log of ``store`` with ``archives`` put back in: :meth:`read` as the store's, so
    that readers of evidence by position (the audit's) find archived events too. Each read
    scans the archives from their start: meant for a few reads, not for the whole log."""

    def __init__(self, store: Store, archives: Sequence[Path]) -> None:
        self.store = store
        self.archives = list(archives)

    def read(self, after: int = 0, limit: int = 1000, stop: int | None = None) -> list[Recorded]:
        """Up to ``limit`` events with ``after < position <= stop``, in position order, from
        the archives and the store. Raises like :meth:`Store.read` and :func:`read_archive`."""
        archived: list[StoredRow] = []
        for path in self.archives:
            _, rows = read_archive(path)
            for row in rows:
                if stop is not None and row.position > stop:
                    break
                if row.position > after:
                    archived.append(row)
                    if len(archived) >= limit:
                        break
        live = self.store.read(after, limit, stop)
        return list(_merge([sorted(map(decode_row, archived), key=attrgetter("position")), live]))[
            :limit
        ]
