"""The 1.6 transaction-id allocator: unique, never reused, 32-bit, safe across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.core.allocator import MAX_TRANSACTION_ID, TransactionIdAllocator
from chargeledger.core.errors import AllocatorExhausted, ChargeLedgerError, StoreUnavailable
from chargeledger.core.events import ALLOCATOR_STREAM, Event, Recorded, TransactionIdsReserved
from chargeledger.core.store import Store, open_store

__all__: list[str] = []


def reservations(store: Store) -> list[TransactionIdsReserved]:
    blocks = []
    for _, event in store.read_stream(ALLOCATOR_STREAM):
        assert isinstance(event, TransactionIdsReserved)
        blocks.append(event)
    return blocks


def assert_blocks_tile_the_id_space(blocks: Sequence[TransactionIdsReserved]) -> None:
    """Reserved blocks follow each other without overlap or gap, starting at 1."""
    expected_first = 1
    for block in blocks:
        assert block.first == expected_first and block.last >= block.first
        expected_first = block.last + 1


async def test_ids_are_unique_and_increasing() -> None:
    allocator = TransactionIdAllocator(open_store("memory://"), block_size=100)
    assert [await allocator.allocate() for _ in range(250)] == list(range(1, 251))


async def test_concurrent_callers_share_one_reservation_at_a_time() -> None:
    store = open_store("memory://")
    allocator = TransactionIdAllocator(store, block_size=7, node="n1")
    ids: list[int] = []

    async def take() -> None:
        ids.append(await allocator.allocate())

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(take)
    assert sorted(ids) == list(range(1, 101))
    blocks = reservations(store)
    assert len(blocks) == 15  # ceil(100 / 7): no block was reserved while another was pending
    assert_blocks_tile_the_id_space(blocks)
    assert {block.node for block in blocks} == {"n1"}


async def test_restart_never_repeats_an_id(store_url: str) -> None:
    store = open_store(store_url)
    first_run = [await TransactionIdAllocator(store, block_size=10).allocate() for _ in range(3)]
    # In-memory stores do not survive a reopen; the others are reopened like a restart.
    if store_url != "memory://":
        store.close()
        store = open_store(store_url)
    try:
        second = TransactionIdAllocator(store, block_size=10)
        later = [await second.allocate() for _ in range(12)]
    finally:
        store.close()
    # Each of the first three allocators reserved its own block of 10 and used one id of it.
    assert first_run == [1, 11, 21]
    assert later == list(range(31, 43))


async def test_conflict_with_another_process_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store("memory://")
    real_append = store.append
    competitor_went = False

    def append_after_a_competitor(items: Sequence[tuple[str, int, Event]]) -> list[Recorded]:
        nonlocal competitor_went
        if not competitor_went:
            competitor_went = True
            rival = TransactionIdsReserved(first=1, last=10, at=0.0, node="other")
            real_append([(ALLOCATOR_STREAM, 1, rival)])
        return real_append(items)  # stale version on the first call: StreamConflict

    monkeypatch.setattr(store, "append", append_after_a_competitor)
    allocator = TransactionIdAllocator(store, block_size=5, node="me")
    assert [await allocator.allocate() for _ in range(6)] == [11, 12, 13, 14, 15, 16]
    assert [(b.node, b.first, b.last) for b in reservations(store)] == [
        ("other", 1, 10),
        ("me", 11, 15),
        ("me", 16, 20),
    ]


async def test_store_failure_hands_out_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store("memory://")
    real_append = store.append

    def down(items: Sequence[tuple[str, int, Event]]) -> list[Recorded]:
        raise StoreUnavailable("database is down")

    monkeypatch.setattr(store, "append", down)
    allocator = TransactionIdAllocator(store, block_size=5)
    with pytest.raises(StoreUnavailable):
        await allocator.allocate()
    monkeypatch.setattr(store, "append", real_append)
    assert await allocator.allocate() == 1


async def test_exhaustion_at_the_32_bit_limit() -> None:
    store = open_store("memory://")
    near_end = TransactionIdsReserved(first=1, last=MAX_TRANSACTION_ID - 2, at=0.0)
    store.append([(ALLOCATOR_STREAM, 1, near_end)])
    allocator = TransactionIdAllocator(store, block_size=100)
    assert await allocator.allocate() == 2**31 - 2
    assert await allocator.allocate() == 2**31 - 1
    with pytest.raises(AllocatorExhausted) as raised:
        await allocator.allocate()
    assert isinstance(raised.value, ChargeLedgerError)
    assert reservations(store)[-1].last == MAX_TRANSACTION_ID  # the last block was clamped
    with pytest.raises(AllocatorExhausted):
        await TransactionIdAllocator(store).allocate()


def test_block_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TransactionIdAllocator(open_store("memory://"), block_size=0)


@settings(max_examples=60, deadline=None)
@given(
    block_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    rounds=st.lists(st.lists(st.integers(0, 3), max_size=8), max_size=8),
)
async def test_interleaved_allocators_never_share_an_id(
    block_sizes: list[int], rounds: list[list[int]]
) -> None:
    """Several allocators (as if in several processes) on one store, racing in rounds."""
    store = open_store("memory://")
    allocators = [TransactionIdAllocator(store, block_size=size) for size in block_sizes]
    taken: list[list[int]] = [[] for _ in allocators]

    async def take(index: int) -> None:
        taken[index].append(await allocators[index].allocate())

    for round_ in rounds:
        # Allocations within a round run concurrently; reservations race in worker threads.
        async with trio.open_nursery() as nursery:
            for index in round_:
                nursery.start_soon(take, index % len(allocators))
    everything = [i for ids in taken for i in ids]
    assert len(everything) == len(set(everything))
    assert all(1 <= i <= MAX_TRANSACTION_ID for i in everything)
    for ids in taken:  # in the order each allocator handed them out
        assert ids == sorted(set(ids))
    assert_blocks_tile_the_id_space(reservations(store))


CHILD = textwrap.dedent(
    """
    import json, sys
    import trio
    from chargeledger.core.allocator import TransactionIdAllocator
    from chargeledger.core.store import open_store

    async def main() -> None:
        store = await trio.to_thread.run_sync(open_store, sys.argv[1])
        allocator = TransactionIdAllocator(store, block_size=7, node=sys.argv[2])
        ids = []
        print("ready", flush=True)
        sys.stdin.readline()  # start together, so that reservations really race

        async def take(n: int) -> None:
            for _ in range(n):
                ids.append(await allocator.allocate())

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(take, 75)
        store.close()
        print(json.dumps(ids))

    trio.run(main)
    """
)


@pytest.mark.postgres
def test_processes_sharing_postgresql_never_share_an_id(postgres_url: str) -> None:
    # The schema does not exist yet: the processes also race to create it.
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, postgres_url, f"proc-{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n", child.communicate(timeout=60)[1]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    ids: list[int] = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        ids.extend(json.loads(out))
    assert len(ids) == 900 and len(set(ids)) == 900
    store = open_store(postgres_url)
    try:
        blocks = reservations(store)
    finally:
        store.close()
    assert_blocks_tile_the_id_space(blocks)
    assert {b.node for b in blocks} == {"proc-0", "proc-1", "proc-2"}
    # Every id handed out lies in a block its own process reserved.
    assert set(ids) <= {i for b in blocks for i in range(b.first, b.last + 1)}
