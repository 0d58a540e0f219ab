"""Tests that kill the mutants of core/writer.py the rest of the suite let survive
(``make mutation``; the list and the equivalent mutants are in docs/testing.md)."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import time
from collections import Counter

import pytest
import trio
import trio.testing

from chargeledger.core.store import GENESIS, Store
from chargeledger.core.writer import GroupCommitWriter
from tests.test_writer import Gate, frame, memory_store, wrap_append


def count_head_queries(monkeypatch: pytest.MonkeyPatch, store: Store) -> Counter[str]:
    """How often the writer asks ``store`` for each stream's head, from now on."""
    asked: Counter[str] = Counter()
    real = store.stream_tail

    def stream_tail(stream: str) -> tuple[int, bytes, str]:
        asked[stream] += 1
        return real(stream)

    monkeypatch.setattr(store, "stream_tail", stream_tail)
    return asked


async def test_successive_batches_of_a_stream_chain_their_hashes() -> None:
    async with GroupCommitWriter(memory_store()) as writer:
        [first] = await writer.append([("a", frame(1))])
        [second] = await writer.append([("a", frame(2))])
        [third] = await writer.append([("a", frame(3))])
    assert first.prev_hash == GENESIS
    assert (second.prev_hash, third.prev_hash) == (first.hash, second.hash)


async def test_the_head_cache_keeps_max_streams_and_evicts_the_least_recent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = memory_store()
    asked = count_head_queries(monkeypatch, store)
    async with GroupCommitWriter(store, max_streams=2) as writer:
        for stream in ("a", "b", "a", "c"):  # "c" evicts "b", used less recently than "a"
            await writer.append([(stream, frame(0))])
        assert asked == {"a": 1, "b": 1, "c": 1}
        await writer.append([("a", frame(1))])  # still remembered
        assert asked["a"] == 1
        await writer.append([("b", frame(1))])  # forgotten: asked again
        assert asked["b"] == 2


async def test_one_stream_and_one_event_per_batch_are_allowed_zero_is_not() -> None:
    async with GroupCommitWriter(memory_store(), max_batch=1, max_streams=1) as writer:
        recorded = await writer.append([("a", frame(1)), ("a", frame(2))])
    assert [r.version for r in recorded] == [1, 2]
    for bad in ({"max_batch": 0}, {"max_streams": 0}):
        with pytest.raises(ValueError):
            GroupCommitWriter(memory_store(), **bad)  # type: ignore[arg-type]


async def test_a_stream_evicted_within_its_own_batch_still_chains() -> None:
    # One append over more streams than the cache holds: "a" is forgotten before its batch
    # commits, so the commit has no head to update for it and must skip it.
    async with GroupCommitWriter(memory_store(), max_streams=1) as writer:
        with trio.fail_after(10):
            first_a, _ = await writer.append([("a", frame(1)), ("b", frame(1))])
            [second_a] = await writer.append([("a", frame(2))])
    assert (second_a.version, second_a.prev_hash) == (2, first_a.hash)


async def test_a_new_stream_starts_at_version_one() -> None:
    async with GroupCommitWriter(memory_store()) as writer:
        first, second = await writer.append([("new", frame(1)), ("new", frame(2))], new_stream=True)
    assert (first.version, first.prev_hash, second.version) == (1, GENESIS, 2)


async def test_a_batch_holds_at_most_1000_events_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = memory_store()
    gate = Gate()
    wrap_append(monkeypatch, store, before=gate.hold)
    sizes: list[int] = []
    async with (
        GroupCommitWriter(store, on_commit=lambda batch: sizes.append(len(batch))) as writer,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(writer.append, [("s", frame(0))])
        await gate.wait_entered()
        for n in range(1001):
            nursery.start_soon(writer.append, [(f"s{n}", frame(n))])
        await trio.testing.wait_all_tasks_blocked()
        gate.opened.set()
    assert sizes == [1, 1000, 1]


def test_statistics_before_the_first_batch_are_zero_and_frozen() -> None:
    stats = GroupCommitWriter(memory_store()).statistics()
    assert (stats.batches, stats.events, stats.failed_batches, stats.last_batch_size) == (0,) * 4
    assert (stats.avg_batch_size, stats.last_commit_seconds, stats.avg_commit_seconds) == (0,) * 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.batches = 1  # type: ignore[misc]


async def test_commit_seconds_per_batch_and_their_mean() -> None:
    durations: list[float] = []
    async with GroupCommitWriter(memory_store()) as writer:
        for n in range(3):
            started = time.perf_counter()
            await writer.append([("a", frame(n)), ("b", frame(n))])
            waited = time.perf_counter() - started
            stats = writer.statistics()
            assert 0 < stats.last_commit_seconds <= waited
            durations.append(stats.last_commit_seconds)
    assert stats.avg_commit_seconds == pytest.approx(sum(durations) / 3)
    assert (stats.batches, stats.events, stats.avg_batch_size) == (3, 6, 2.0)


async def test_new_stream_is_keyword_only() -> None:
    async with GroupCommitWriter(memory_store()) as writer:
        with pytest.raises(TypeError):
            await writer.append([("a", frame(1))], True)  # type: ignore[misc]


def test_a_writer_left_open_does_not_keep_the_process_alive() -> None:
    # The writer thread blocks on its queue until told to stop; a trio run that ends without
    # closing the writer must still let the interpreter exit (a daemon thread).
    code = (
        "import trio\n"
        "from chargeledger.core.store import open_store\n"
        "from chargeledger.core.writer import GroupCommitWriter\n"
        "async def main():\n"
        "    await GroupCommitWriter(open_store('memory://')).__aenter__()\n"
        "trio.run(main)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_a_cancelled_aclose_still_waits_for_the_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = memory_store()
    wrap_append(monkeypatch, store, before=lambda: time.sleep(0.3))
    writer = GroupCommitWriter(store)
    async with trio.open_nursery() as nursery:
        await writer.__aenter__()
        nursery.start_soon(writer.append, [("a", frame(1))])
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await writer.aclose()  # shielded: returns only once the batch is committed
        assert store.max_position() == 1


def test_a_trio_run_that_ends_before_delivery_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = memory_store()
    wrap_append(monkeypatch, store, before=lambda: time.sleep(0.2))
    writer = GroupCommitWriter(store)

    async def run_without_closing() -> None:
        await writer.__aenter__()
        with trio.move_on_after(0.05):  # the append stays queued, its waiter goes
            await writer.append([("a", frame(1))])

    with caplog.at_level(logging.WARNING, logger="chargeledger.core.writer"):
        trio.run(run_without_closing)
        deadline = time.monotonic() + 10
        while "trio run finished" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "trio run finished before the writer delivered its results" in caplog.text
    assert store.max_position() == 1
