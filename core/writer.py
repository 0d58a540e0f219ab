"""The group-commit writer: one thread that commits everything queued in one store transaction.

Session tasks hand their events to :meth:`GroupCommitWriter.append` and wait; the writer
thread takes whatever has queued up meanwhile, assigns stream versions, commits it with one
:meth:`Store.append <chargeledger.core.store.Store.append>` and wakes the waiters on the trio
thread. Many frames per transaction is what makes durable-before-reply affordable (see
``docs/write-path.md``).

Use it as an async context manager on the trio thread::

    async with GroupCommitWriter(store, on_commit=update_projections) as writer:
        recorded = await writer.append([(stream, event), ...])

Leaving the block flushes everything queued, then stops the thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import trio

from chargeledger.core.errors import SessionFenced, StoreUnavailable, StreamConflict
from chargeledger.core.events import Event, Recorded, SessionClosed
from chargeledger.core.store import GENESIS, Store

__all__ = ["GroupCommitWriter", "WriterStatistics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterStatistics:
    """Counters since the writer started (for metrics); a consistent snapshot."""

    batches: int
    """Committed batches (transactions)."""
    events: int
    """Committed events."""
    failed_batches: int
    """Batches whose commit failed (their waiters got ``StoreUnavailable``)."""
    failed_unattempted: int
    """Append calls failed without a commit attempt: they were queued behind a batch that
    failed for a store failure (see :class:`GroupCommitWriter`)."""
    last_batch_size: int
    """Events in the last committed batch (0 before the first)."""
    avg_batch_size: float
    """Events per committed batch."""
    last_commit_seconds: float
    """Duration of the last committed batch's version lookups and transaction."""
    avg_commit_seconds: float
    """Mean of ``last_commit_seconds`` over committed batches."""


@dataclass(eq=False)
class _Request:
    """One append() call: its events and, once the batch is decided, its outcome."""

    events: list[tuple[str, Event]]
    new_stream: bool = False
    versions: dict[str, int] | None = None
    """Streams written with optimistic concurrency: the version of their first event here."""
    done: trio.Event = field(default_factory=trio.Event)
    recorded: list[Recorded] | None = None
    error: Exception | None = None


@dataclass(slots=True)
class _Head:
    """What the writer thread remembers of a stream: its next version and newest hash."""

    next_version: int
    hash: bytes


def _clash(clash: tuple[str, int], taken_by: Event, explicit: Mapping[str, int]) -> Exception:
    """The error of an append whose version of ``clash`` another append of its batch took:
    a conflict for an optimistic append (its caller reads again), the fence for a session's
    own append meeting another node's close of it, else a conflict (``StoreUnavailable`` to
    its caller)."""
    stream, version = clash
    if stream not in explicit and isinstance(taken_by, SessionClosed):
        return SessionFenced(f"{stream} is closed at version {version} in the same commit")
    return StreamConflict(f"version {version} of {stream} is taken in the same commit")


_CONFLICT_ROUNDS = 8
"""Attempts of one batch while conflicts keep failing some of its requests (each round
fails at least one request; more rounds mean many writers are racing for the same streams)."""

_STOP = None  # the queue item that tells the thread to finish


class GroupCommitWriter:
    """Commits appended events in batches from one writer thread; the trio side never blocks.

    It must be the only appender of the streams it is given (session streams): it assigns
    their versions itself, and hands the store the hash of each stream's newest event to
    chain the next one to, both from ``store.stream_tail(stream)`` the first time it meets a
    stream and from memory afterwards (at most ``max_streams`` streams are remembered; a
    forgotten one is looked up again, so the bound costs a query, never correctness). The one
    other writer it expects is another node closing one of its sessions (docs/cluster.md):
    that append is refused with ``SessionFenced``, and so is every later one to that session.

    ``on_commit(batch)`` runs on the trio thread with each committed batch, in position order,
    before any waiter of that batch resumes; it must not block and should not raise (an
    exception is logged and the waiters still get their results, since the events are
    committed). A batch holds whole append() calls, closed once it reaches ``max_batch``
    events.

    ``before_commit``, when set (``None`` by default, and in production), is a seam for
    fault-injection tests: the writer thread calls it with each batch's ``(stream, version,
    event)`` items just before the store commits them. Blocking in it holds that commit (and
    every later one: there is one writer thread); raising fails the batch exactly as a store
    failure does (nothing of it is written, its waiters get ``StoreUnavailable``). It may be set
    or cleared at any time; a batch already past the call is not affected.
    """

    def __init__(
        self,
        store: Store,
        on_commit: Callable[[list[Recorded]], None] | None = None,
        max_batch: int = 1000,
        *,
        max_streams: int = 100_000,
    ) -> None:
        if max_batch < 1 or max_streams < 1:
            raise ValueError("max_batch and max_streams must be at least 1")
        self._store = store
        self.before_commit: Callable[[Sequence[tuple[str, int, Event]]], None] | None = None
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._max_streams = max_streams
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        # Writer thread only: the next version and newest hash of each recently seen stream.
        self._heads: OrderedDict[str, _Head] = OrderedDict()
        self._thread = threading.Thread(target=self._run, name="group-commit-writer", daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._stopped = trio.Event()
        self._state = "new"  # -> "open" -> "closed"
        self._stats_lock = threading.Lock()
        self._batches = self._events = self._failed = self._last_size = 0
        self._unattempted = 0
        self._last_seconds = self._total_seconds = 0.0

    async def __aenter__(self) -> Self:
        """Start the writer thread. Raises ``RuntimeError`` when entered twice."""
        if self._state != "new":
            raise RuntimeError("a GroupCommitWriter can be started only once")
        self._token = trio.lowlevel.current_trio_token()
        self._state = "open"
        self._thread.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def append(
        self,
        events: Sequence[tuple[str, Event]],
        *,
        new_stream: bool = False,
        versions: Mapping[str, int] | None = None,
    ) -> list[Recorded]:
        """Commit ``(stream, event)`` pairs atomically; return them as recorded, in order.

        ``new_stream=True`` promises that the streams are brand new (a fresh session id), so
        the writer starts them at version 1 without asking the store for their head; a broken
        promise is caught by the store (``StreamConflict``, reported as ``StoreUnavailable``).

        ``versions`` names streams several nodes write (a station's holder stream, another
        node's session stream being fenced): the first event of such a stream here gets the
        version given (the caller read the head), not one the writer assigns, and a version
        already taken fails this call with :class:`StreamConflict` (the caller re-reads and
        decides again); the other calls of its batch are committed without it.

        Returns only once they are committed (durable). Raises :class:`StoreUnavailable`
        when their batch could not be committed (nothing of it is written, but see
        ``docs/write-path.md`` on lost acknowledgements), :class:`SessionFenced` when a
        stream it appends to was closed by someone else meanwhile (another node took the
        station over, or released a presumed-dead node's session: nothing of this call is
        written, ever), ``trio.ClosedResourceError`` once
        the writer is closing or closed, ``RuntimeError`` before it is started.

        Cancelling the caller does not withdraw the events: they stay in their batch, are
        committed (or fail) with it and reach ``on_commit``; only the result is dropped.
        """
        if self._state != "open":
            if self._state == "new":
                raise RuntimeError("GroupCommitWriter used before `async with` started it")
            raise trio.ClosedResourceError("the writer is closed")
        if not events:
            return []
        request = _Request(list(events), new_stream, dict(versions) if versions else None)
        self._queue.put(request)
        await request.done.wait()
        error = request.error
        if error is not None:
            if isinstance(error, SessionFenced) or (
                isinstance(error, StreamConflict) and request.versions
            ):
                raise error
            raise StoreUnavailable(str(error)) from error
        assert request.recorded is not None
        return request.recorded

    async def aclose(self) -> None:
        """Commit everything queued, deliver it, stop the thread; idempotent.

        Shielded from cancellation, so a cancelled shutdown still flushes: it takes as long as
        the last batch's commit (bounded by the store's timeouts).
        """
        if self._state == "new":
            self._state = "closed"
            return
        if self._state == "open":
            self._state = "closed"
            self._queue.put(_STOP)
        with trio.CancelScope(shield=True):
            await self._stopped.wait()
        self._thread.join()

    def statistics(self) -> WriterStatistics:
        """Batch and latency counters (thread-safe snapshot)."""
        with self._stats_lock:
            return WriterStatistics(
                batches=self._batches,
                events=self._events,
                failed_batches=self._failed,
                failed_unattempted=self._unattempted,
                last_batch_size=self._last_size,
                avg_batch_size=self._events / self._batches if self._batches else 0.0,
                last_commit_seconds=self._last_seconds,
                avg_commit_seconds=self._total_seconds / self._batches if self._batches else 0.0,
            )

    # -- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, size = [first], len(first.events)
            while size < self._max_batch:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is _STOP:
                    stopping = True
                    break
                batch.append(request)
                size += len(request.events)
            error = self._commit(batch)
            if error is None:
                continue
            if not isinstance(error, StreamConflict):
                # Taken before the failure is delivered: a caller it wakes may append again
                # at once, and that request must get its own attempt.
                queued, stop = self._take_queued()
                stopping = stopping or stop
                with self._stats_lock:
                    self._unattempted += len(queued)
                batch += queued
            self._deliver_soon(self._fail, batch, error)
        self._deliver_soon(self._stopped.set)

    def _take_queued(self) -> tuple[list[_Request], bool]:
        """Every request queued now, and whether the stop item was among them (it ends the
        thread once they are failed)."""
        taken: list[_Request] = []
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return taken, False
            if request is _STOP:
                return taken, True
            taken.append(request)

    def _commit(self, batch: list[_Request]) -> Exception | None:
        """Commit ``batch`` and deliver the result; when it fails, return the error without
        delivering it (``_run`` does).

        A request appending to a session stream someone else closed (looked up closed, or
        found closed after a conflict) is failed alone with :class:`SessionFenced`; a
        ``StreamConflict`` fails only the requests whose streams moved, and the rest of the
        batch is committed again (``_split_conflicts``)."""
        started = time.perf_counter()
        for _ in range(_CONFLICT_ROUNDS):
            items: list[tuple[str, int, Event]] = []
            try:
                items, heads, refused = self._assign_versions(batch)
                if refused:
                    self._deliver_soon(self._fail_each, refused)
                    batch = [request for request in batch if request not in dict(refused)]
                    if not batch:
                        return None
                hook = self.before_commit
                if hook is not None:
                    hook(items)
                recorded = self._store.append(items, heads)
            except StreamConflict as exc:
                self._forget(batch)
                with self._stats_lock:
                    self._failed += 1
                try:
                    failed, batch = self._split_conflicts(batch, items, exc)
                except Exception as lookup:  # the store failed while we looked: fail them all
                    log.error("group commit conflicted and the store failed: %s", lookup)
                    return exc
                if not failed:  # no stream moved: nothing to tell them apart by
                    log.error("group commit of %d request(s) conflicted: %s", len(batch), exc)
                    return exc
                log.info(
                    "%d request(s) conflicted; committing the other %d", len(failed), len(batch)
                )
                self._deliver_soon(self._fail_each, failed)
                if not batch:
                    return None
                continue
            except Exception as exc:
                # Forget rather than roll back the versions: a re-read is right even when the
                # batch was in fact committed and only its acknowledgement was lost.
                self._forget(batch)
                log.error("group commit of %d request(s) failed: %s", len(batch), exc)
                with self._stats_lock:
                    self._failed += 1
                return exc
            for committed in recorded:
                head = self._heads.get(committed.stream)
                if head is not None and committed.hash is not None:
                    head.hash = committed.hash
            seconds = time.perf_counter() - started
            with self._stats_lock:
                self._batches += 1
                self._events += len(recorded)
                self._last_size = len(recorded)
                self._last_seconds = seconds
                self._total_seconds += seconds
            self._deliver_soon(self._succeed, batch, recorded)
            return None
        return StreamConflict(f"still conflicting after {_CONFLICT_ROUNDS} rounds")

    def _forget(self, batch: list[_Request]) -> None:
        for request in batch:
            for stream, _ in request.events:
                self._heads.pop(stream, None)

    def _split_conflicts(
        self, batch: list[_Request], items: list[tuple[str, int, Event]], conflict: Exception
    ) -> tuple[list[tuple[_Request, Exception]], list[_Request]]:
        """After ``conflict``: the requests whose streams moved (another writer took the
        versions assigned to them: a fence, an optimistic write that lost, or this very batch
        committed with its acknowledgement lost), each with its error, and the others, to be
        committed again. One head read per stream of the batch: conflicts are rare."""
        expected: dict[str, int] = {}
        ours: dict[str, list[Event]] = {}
        for stream, version, event in items:
            expected.setdefault(stream, version - 1)
            ours.setdefault(stream, []).append(event)
        moved: dict[str, bool] = {}  # stream -> closed by someone else
        for stream, before in expected.items():
            last = self._store.last_event(stream)
            if last is not None and last[0] > before:
                newest = last[1]
                moved[stream] = isinstance(newest, SessionClosed) and newest not in ours[stream]
        failed: list[tuple[_Request, Exception]] = []
        rest: list[_Request] = []
        for request in batch:
            streams = {stream for stream, _ in request.events}
            hit = streams & moved.keys()
            if not hit:
                rest.append(request)
                continue
            closed = sorted(stream for stream in hit if moved[stream])
            error: Exception
            if request.versions and hit & request.versions.keys():
                # An optimistic write that lost: its caller reads again and decides.
                error = StreamConflict(f"{sorted(hit)[0]} moved: {conflict}")
            elif closed:
                error = SessionFenced(f"{closed[0]} was closed by another writer: {conflict}")
            else:
                error = StreamConflict(f"{sorted(hit)[0]} moved: {conflict}")
            failed.append((request, error))
        return failed, rest

    def _assign_versions(
        self, batch: list[_Request]
    ) -> tuple[list[tuple[str, int, Event]], dict[str, bytes], list[tuple[_Request, Exception]]]:
        """The batch's ``(stream, version, event)`` items, the hash each stream's first
        item chains to (``_commit`` updates the hashes once the store has computed them),
        and the requests refused because a stream they append to is closed (fenced).

        A stream met for the first time is looked up (its head, and whether its newest event
        is a ``SessionClosed``); a stream the request gives a version for (``versions``) is
        not remembered: the store chains it to its stored head."""
        items: list[tuple[str, int, Event]] = []
        heads: dict[str, bytes] = {}
        refused: list[tuple[_Request, Exception]] = []
        # Versions given out in this batch: an optimistic append may ask for one a session's
        # own append takes in the same batch (a takeover racing the session's close). Only a
        # batch holding an optimistic append can clash: the others (nearly all) skip this.
        careful = any(request.versions for request in batch)
        claimed: dict[tuple[str, int], Event] = {}
        cache = self._heads
        for request in batch:
            explicit = request.versions or {}
            closed = self._closed_stream(request, explicit)
            if closed is not None:
                refused.append(
                    (request, SessionFenced(f"{closed} is closed: nothing more is appended"))
                )
                continue
            if not careful:  # the hot path: versions from the heads, one after the other
                for stream, event in request.events:
                    head = cache.pop(stream, None)
                    if head is None:
                        head = self._head_of(stream, request)
                        if len(cache) >= self._max_streams:
                            cache.popitem(last=False)
                    heads.setdefault(stream, head.hash)
                    items.append((stream, head.next_version, event))
                    head.next_version += 1
                    cache[stream] = head  # re-inserted: the most recently used
                continue
            proposed, found = self._propose(request, explicit)
            clash = next(((s, v) for s, v, _ in proposed if (s, v) in claimed), None)
            if clash is not None:
                refused.append((request, _clash(clash, claimed[clash], explicit)))
                continue
            for stream, version, event in proposed:
                claimed[stream, version] = event
                items.append((stream, version, event))
                self._heads.pop(stream, None)
                head = found.get(stream)
                if head is None:  # given a version: not remembered, the store chains it
                    continue
                heads.setdefault(stream, head.hash)
                head.next_version = version + 1
                # Re-inserting marks the stream as most recently used.
                self._remember(stream, head)
        return items, heads, refused

    def _head_of(self, stream: str, request: _Request) -> _Head:
        """The head of a stream the writer does not remember: a new session stream has none
        (no query: one per connection), another is looked up."""
        if request.new_stream:
            return _Head(1, GENESIS)
        last, newest, _ = self._store.stream_tail(stream)
        return _Head(last + 1, newest)

    def _propose(
        self, request: _Request, explicit: Mapping[str, int]
    ) -> tuple[list[tuple[str, int, Event]], dict[str, _Head]]:
        """The versions ``request``'s events would get, and the heads of the streams the
        writer assigns versions of (remembered, looked up, or new), changing nothing."""
        proposed: list[tuple[str, int, Event]] = []
        found: dict[str, _Head] = {}
        next_of: dict[str, int] = {}
        for stream, event in request.events:
            if stream not in next_of:
                if stream in explicit:
                    next_of[stream] = explicit[stream]
                else:
                    head = self._heads.get(stream) or self._head_of(stream, request)
                    found[stream] = head
                    next_of[stream] = head.next_version
            proposed.append((stream, next_of[stream], event))
            next_of[stream] += 1
        return proposed, found

    def _closed_stream(self, request: _Request, explicit: Mapping[str, int]) -> str | None:
        """A stream of ``request`` whose newest stored event is a ``SessionClosed`` (looked
        up for streams not remembered: a remembered stream was open when last seen, and a
        close by someone else since shows up as a conflict)."""
        if request.new_stream:
            return None
        for stream, _ in request.events:
            if stream in explicit or stream in self._heads:
                continue
            last, newest, topic = self._store.stream_tail(stream)
            if topic == "SessionClosed":
                return stream
            self._remember(stream, _Head(last + 1, newest))
        return None

    def _remember(self, stream: str, head: _Head) -> None:
        self._heads.pop(stream, None)
        if len(self._heads) >= self._max_streams:
            self._heads.popitem(last=False)
        self._heads[stream] = head

    def _deliver_soon(self, func: Callable[..., object], *args: object) -> None:
        assert self._token is not None
        try:
            self._token.run_sync_soon(func, *args)
        except trio.RunFinishedError:
            # The trio run ended without closing the writer: nobody is left to wake.
            log.warning("trio run finished before the writer delivered its results")

    # -- trio thread (via run_sync_soon; an exception here would crash the trio run) ------

    def _succeed(self, batch: list[_Request], recorded: list[Recorded]) -> None:
        if self._on_commit is not None:
            try:
                self._on_commit(recorded)
            except Exception:
                log.exception("on_commit failed for a batch of %d events", len(recorded))
        offset = 0
        for request in batch:
            end = offset + len(request.events)
            request.recorded = recorded[offset:end]
            offset = end
            request.done.set()

    def _fail_each(self, failed: list[tuple[_Request, Exception]]) -> None:
        for request, error in failed:
            request.error = error
            request.done.set()

    def _fail(self, batch: list[_Request], error: Exception) -> None:
        for request in batch:
            request.error = error
            request.done.set()
