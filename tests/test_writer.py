"""The group-commit writer: batching, ordering, on_commit, failures, cancellation, close."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from chargeledger.core.errors import SessionFenced, StoreUnavailable, StreamConflict
from chargeledger.core.events import Event, FrameLogged, Recorded, SessionClosed
from chargeledger.core.store import Store, open_store
from chargeledger.core.writer import GroupCommitWriter
from tests.polling import eventually

__all__: list[str] = []


def frame(n: int) -> FrameLogged:
    return FrameLogged(station="CP", session="s", at=float(n), direction="in", text=f"[{n}]")


def memory_store() -> Store:
    return open_store("memory://")


def wrap_append(
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    before: Callable[[], None] = lambda: None,
    after: Callable[[], None] = lambda: None,
) -> None:
    """Run ``before`` and ``after`` around each ``store.append`` (in the writer thread)."""
    real = store.append

    def append(
        items: Sequence[tuple[str, int, Event]], heads: Mapping[str, bytes] | None = None
    ) -> list[Recorded]:
        before()
        recorded = real(items, heads)
        after()
        return recorded

    monkeypatch.setattr(store, "append", append)


class Gate:
    """Holds the writer thread inside ``store.append`` until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def hold(self) -> None:
        self.entered.set()
        self.opened.wait()

    async def wait_entered(self) -> None:
        await trio.to_thread.run_sync(self.entered.wait)


async def test_concurrent_appenders_all_committed_in_order(store: Store) -> None:
    seen: list[Recorded] = []
    results: dict[int, list[list[Recorded]]] = {}

    async def appender(writer: GroupCommitWriter, task: int) -> None:
        results[task] = []
        for n in range(10):
            events: list[tuple[str, Event]] = [(f"s{task}", frame(n)), (f"s{task}", frame(-n))]
            recorded = await writer.append(events)
            assert [r.event for r in recorded] == [e for _, e in events]
            results[task].append(recorded)

    async with (
        GroupCommitWriter(store, on_commit=seen.extend) as writer,
        trio.open_nursery() as nursery,
    ):
        for task in range(40):
            nursery.start_soon(appender, writer, task)

    positions = [r.position for r in seen]
    assert positions == sorted(positions) and len(set(positions)) == 800
    assert seen == store.read(limit=10_000)
    for task, appends in results.items():
        flat = [r for recorded in appends for r in recorded]
        assert [r.version for r in flat] == list(range(1, 21))
        assert [r.position for r in flat] == sorted(r.position for r in flat)
        assert {r.stream for r in flat} == {f"s{task}"}
    stats = writer.statistics()
    assert stats.events == 800 and stats.batches < 400 and stats.failed_batches == 0


async def test_group_commit_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    store = memory_store()
    gate = Gate()
    wrap_append(monkeypatch, store, before=gate.hold)
    async with GroupCommitWriter(store) as writer, trio.open_nursery() as nursery:
        nursery.start_soon(writer.append, [("s0", frame(0))])
        await gate.wait_entered()
        for task in range(1, 50):
            nursery.start_soon(writer.append, [(f"s{task}", frame(task))])
        await trio.testing.wait_all_tasks_blocked()
        gate.opened.set()  # the first batch held the thread while the other 49 queued up
    stats = writer.statistics()
    assert (stats.batches, stats.events, stats.last_batch_size) == (2, 50, 49)
    assert stats.avg_batch_size == 25.0 and stats.avg_commit_seconds > 0


async def test_max_batch_never_splits_an_append(monkeypatch: pytest.MonkeyPatch) -> None:
    store = memory_store()
    gate = Gate()
    wrap_append(monkeypatch, store, before=gate.hold)
    sizes: list[int] = []
    async with (
        GroupCommitWriter(store, on_commit=lambda b: sizes.append(len(b)), max_batch=5) as writer,
        trio.open_nursery() as nursery,
    ):
        for task in range(5):
            nursery.start_soon(writer.append, [(f"s{task}", frame(n)) for n in range(3)])
            if task == 0:
                await gate.wait_entered()
        await trio.testing.wait_all_tasks_blocked()
        gate.opened.set()
    assert sizes == [3, 6, 6]


async def test_on_commit_runs_before_the_waiters_resume() -> None:
    committed: set[int] = set()
    async with GroupCommitWriter(
        memory_store(), on_commit=lambda b: committed.update(r.position for r in b)
    ) as writer:
        for n in range(3):
            recorded = await writer.append([("s", frame(n))])
            assert recorded[0].position in committed


async def test_failing_store_fails_the_batch_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    store = memory_store()
    down = True

    def fail_when_down() -> None:
        if down:
            raise StoreUnavailable("database is down")

    wrap_append(monkeypatch, store, before=fail_when_down)
    seen: list[Recorded] = []
    async with GroupCommitWriter(store, on_commit=seen.extend) as writer:
        with pytest.raises(StoreUnavailable, match="database is down"):
            await writer.append([("a", frame(1)), ("b", frame(2))])
        down = False
        recorded = await writer.append([("a", frame(3)), ("b", frame(4))])
    # The failed batch left no trace: its versions were not used up.
    assert [(r.stream, r.version) for r in recorded] == [("a", 1), ("b", 1)]
    assert seen == recorded == store.read()
    assert writer.statistics().failed_batches == 1


async def test_calls_queued_behind_a_failing_attempt_fail_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In an outage each attempt takes the store's timeout: the calls that queued during one
    fail with it at once, instead of waiting for an attempt of their own; the next call
    tries the store again (recovery without a restart)."""
    store = memory_store()
    gate, attempts, down = Gate(), list[int](), True

    def slow_failure() -> None:
        attempts.append(1)
        if down:
            gate.hold()
            raise StoreUnavailable("database is down")

    wrap_append(monkeypatch, store, before=slow_failure)
    failed: list[str] = []

    async def appender(writer: GroupCommitWriter, stream: str) -> None:
        with pytest.raises(StoreUnavailable, match="database is down"):
            await writer.append([(stream, frame(1))])
        failed.append(stream)

    async with GroupCommitWriter(store) as writer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(appender, writer, "first")
            await gate.wait_entered()
            for n in range(3):
                nursery.start_soon(appender, writer, f"queued{n}")
            await eventually(lambda: writer._queue.qsize() == 3, what="three queued calls")
            gate.opened.set()
        assert sorted(failed) == ["first", "queued0", "queued1", "queued2"]
        assert len(attempts) == 1, "the queued calls were not tried again"
        stats = writer.statistics()
        assert (stats.failed_batches, stats.failed_unattempted) == (1, 3)
        down = False
        recorded = await writer.append([("after", frame(2))])
    assert [r.stream for r in recorded] == ["after"] and len(attempts) == 2


async def test_commit_whose_acknowledgement_was_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store committed but reported a failure: the next append must not reuse versions."""
    store = memory_store()
    commits = 0

    def lose_second_ack() -> None:
        nonlocal commits
        commits += 1
        if commits == 2:
            raise StoreUnavailable("connection lost during commit")

    wrap_append(monkeypatch, store, after=lose_second_ack)
    async with GroupCommitWriter(store) as writer:
        await writer.append([("a", frame(1))])  # version 1
        with pytest.raises(StoreUnavailable):
            await writer.append([("a", frame(2))])  # version 2, committed, ack lost
        [recorded] = await writer.append([("a", frame(3))])
    assert recorded.version == 3
    assert [v for v, _ in store.read_stream("a")] == [1, 2, 3]


async def test_versions_continue_existing_streams_and_survive_cache_eviction() -> None:
    store = memory_store()
    store.append([("a", 1, frame(0)), ("a", 2, frame(0))])
    async with GroupCommitWriter(store, max_streams=2) as writer:
        for n in range(3):
            for stream in ("a", "b", "c"):  # three streams through a cache of two
                await writer.append([(stream, frame(n))])
    assert [v for v, _ in store.read_stream("a")] == [1, 2, 3, 4, 5]
    assert [v for v, _ in store.read_stream("c")] == [1, 2, 3]


async def test_cancelled_waiter_still_gets_its_events_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = memory_store()
    gate = Gate()
    wrap_append(monkeypatch, store, before=gate.hold)
    seen: list[Recorded] = []
    async with GroupCommitWriter(store, on_commit=seen.extend) as writer:
        with trio.CancelScope() as scope:
            scope.cancel()
            await writer.append([("a", frame(1)), ("a", frame(2))])
        gate.opened.set()
        await writer.append([("a", frame(3))])
    assert scope.cancelled_caught
    assert [r.event for r in seen] == [frame(1), frame(2), frame(3)]
    assert [v for v, _ in store.read_stream("a")] == [1, 2, 3]


async def test_on_commit_exception_is_contained() -> None:
    def broken(batch: list[Recorded]) -> None:
        raise RuntimeError("projection bug")

    async with GroupCommitWriter(memory_store(), on_commit=broken) as writer:
        [recorded] = await writer.append([("a", frame(1))])
    assert recorded.version == 1


async def test_aclose_flushes_and_later_appends_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    store = memory_store()
    gate = Gate()
    wrap_append(monkeypatch, store, before=gate.hold)
    results: list[list[Recorded]] = []

    async def appender(writer: GroupCommitWriter, task: int) -> None:
        results.append(await writer.append([(f"s{task}", frame(task))]))

    writer = GroupCommitWriter(store)
    async with trio.open_nursery() as nursery:
        await writer.__aenter__()
        for task in range(20):
            nursery.start_soon(appender, writer, task)
        await trio.testing.wait_all_tasks_blocked()
        gate.opened.set()
        await writer.aclose()
        # Every queued append was committed before aclose() returned, and its waiter woken.
        assert store.max_position() == 20
    assert len(results) == 20
    with pytest.raises(trio.ClosedResourceError):
        await writer.append([("a", frame(1))])
    await writer.aclose()  # idempotent


async def test_append_before_start_raises() -> None:
    writer = GroupCommitWriter(memory_store())
    with pytest.raises(RuntimeError):
        await writer.append([("a", frame(1))])


def closed(session: str) -> SessionClosed:
    return SessionClosed(station="CP", session=session, at=0.0, code=1008, by="csms")


async def batched_together(
    writer: GroupCommitWriter,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    *appends: Callable[[], Any],
) -> None:
    """Run ``appends`` so that they land in one batch, in this order: the writer is held on a
    commit of its own stream until all of them are queued."""
    gate = Gate()
    held = False

    def hold_first() -> None:
        nonlocal held
        if not held:
            held = True
            gate.hold()

    wrap_append(monkeypatch, store, before=hold_first)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.append, [("holder-of-the-writer", frame(0))])
        await gate.wait_entered()
        for append in appends:  # queued in this order: each waits for its commit first
            nursery.start_soon(append)
            await trio.testing.wait_all_tasks_blocked()
        gate.opened.set()


async def test_a_fenced_session_fails_alone_and_its_batch_mates_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer closes stream ``a`` at the version this writer assigned (another node
    taking the station over): the batch conflicts, ``a``'s append is refused with
    ``SessionFenced``, ``b``'s in the same batch is committed, and ``a`` stays refused."""
    store = memory_store()
    outcomes: dict[str, object] = {}

    def fence(items: Sequence[tuple[str, int, Event]]) -> None:
        for stream, version, _ in items:
            if stream == "a" and version == 2 and not store.read_stream("a")[1:]:
                store.append([("a", 2, closed("a"))])  # B, at the same version

    async with GroupCommitWriter(store) as writer:
        await writer.append([("a", frame(1))])
        await writer.append([("b", frame(1))])

        async def append(stream: str) -> None:
            try:
                outcomes[stream] = await writer.append([(stream, frame(2))])
            except StoreUnavailable as exc:
                outcomes[stream] = exc

        writer.before_commit = fence
        await batched_together(
            writer, store, monkeypatch, partial(append, "a"), partial(append, "b")
        )
        assert isinstance(outcomes["a"], SessionFenced)
        assert [r.version for r in outcomes["b"]] == [2]  # type: ignore[attr-defined]
        with pytest.raises(SessionFenced):  # looked up again: closed, refused before commit
            await writer.append([("a", frame(3))])
        assert writer.statistics().failed_batches == 1
    assert [type(e) for _, e in store.read_stream("a")] == [FrameLogged, SessionClosed]
    assert [v for v, _ in store.read_stream("b")] == [1, 2]


async def test_a_conflict_of_a_batch_committed_with_its_acknowledgement_lost_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The commit succeeded, the database's answer was lost and the recorder's own retry
    conflicted with it: every request of the batch moved its streams, so none is committed
    again (nothing twice) and each waiter gets ``StoreUnavailable``, none ``SessionFenced``:
    its own close is not someone else's."""
    store = memory_store()
    real = store.append
    lost = False

    def commit_then_conflict(
        items: Sequence[tuple[str, int, Event]], heads: Mapping[str, bytes] | None = None
    ) -> list[Recorded]:
        nonlocal lost
        recorded = real(items, heads)
        if not lost and any(stream == "a" for stream, _, _ in items):
            lost = True
            raise StreamConflict("the retry of a committed insert")
        return recorded

    monkeypatch.setattr(store, "append", commit_then_conflict)
    async with GroupCommitWriter(store) as writer:
        with pytest.raises(StoreUnavailable) as failed:
            await writer.append([("a", closed("a")), ("b", frame(1))])
        assert not isinstance(failed.value, SessionFenced)
    assert [v for v, _ in store.read_stream("a")] == [1]
    assert [v for v, _ in store.read_stream("b")] == [1]


async def test_optimistic_versions_fail_only_their_own_append() -> None:
    async with GroupCommitWriter(memory_store()) as writer:
        await writer.append([("holder", frame(1))], versions={"holder": 1})
        with pytest.raises(StreamConflict):
            await writer.append([("holder", frame(2))], versions={"holder": 1})
        [second] = await writer.append([("holder", frame(2))], versions={"holder": 2})
        assert (second.version, second.prev_hash is not None) == (2, True)


async def test_an_optimistic_close_that_lost_to_the_session_own_close_is_a_conflict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A takeover closing a session at the version after the head it read, while the
    session records its own close at that version in the same batch: the takeover's append
    fails with ``StreamConflict`` (its caller reads again and finds the session closed), not
    ``SessionFenced`` (it was not appending to the session as its writer)."""
    store = memory_store()
    outcomes: dict[str, object] = {}
    async with GroupCommitWriter(store) as writer:
        await writer.append([("s", frame(1))])

        async def own_close() -> None:
            outcomes["own"] = await writer.append([("s", closed("s"))])

        async def takeover() -> None:
            try:
                await writer.append([("s", closed("s")), ("held", frame(1))], versions={"s": 2})
            except StoreUnavailable as exc:
                outcomes["takeover"] = exc
            except StreamConflict as exc:
                outcomes["takeover"] = exc

        await batched_together(writer, store, monkeypatch, own_close, takeover)
    assert type(outcomes["takeover"]) is StreamConflict
    assert [type(e) for _, e in store.read_stream("s")] == [FrameLogged, SessionClosed]


async def test_a_session_append_after_another_writer_close_in_the_same_batch_is_fenced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other way round: another node's close of the session is first in the batch, the
    session's own frame after it asks for the same version: the frame is refused with
    ``SessionFenced`` before the commit, the close and the batch's other appends commit."""
    store = memory_store()
    outcomes: dict[str, object] = {}
    async with GroupCommitWriter(store) as writer:
        await writer.append([("s", frame(1))])

        async def fence() -> None:
            outcomes["fence"] = await writer.append([("s", closed("s"))], versions={"s": 2})

        async def own_frame() -> None:
            try:
                outcomes["own"] = await writer.append([("s", frame(2))])
            except StoreUnavailable as exc:
                outcomes["own"] = exc

        async def other() -> None:
            outcomes["other"] = await writer.append([("t", frame(1))])

        await batched_together(writer, store, monkeypatch, fence, own_frame, other)
        assert isinstance(outcomes["own"], SessionFenced)
        with pytest.raises(SessionFenced):
            await writer.append([("s", frame(3))])
    assert [type(e) for _, e in store.read_stream("s")] == [FrameLogged, SessionClosed]
    assert [v for v, _ in store.read_stream("t")] == [1]
