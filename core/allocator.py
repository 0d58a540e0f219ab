"""The OCPP 1.6 transaction-id allocator: store-wide unique ids from blocks reserved in the log.

OCPP 1.6 has the CSMS invent ``transactionId`` (a signed 32-bit integer) in the
StartTransaction answer. The allocator hands ids out of a block (hi/lo): a block
``first..last`` is reserved by appending ``TransactionIdsReserved`` to
``ALLOCATOR_STREAM`` with optimistic concurrency, and is committed before any of its ids is
used. Several processes sharing one store therefore never hand out the same id; the ids of a
block a process did not use up before stopping are skipped forever.

Not a clock (two starts in one tick collide, clocks step back), not random numbers (31 bits
likely collide within ~55k transactions by the birthday bound, and uniqueness could not be checked
without a store-wide lookup), not per-station counters (a station's ids then repeat across
stations, and billing, the API and stations that keep ids across a reconnect to another node
need them unique store-wide). See ``docs/write-path.md``.
"""

from __future__ import annotations

import time

import trio

from chargeledger.core.errors import AllocatorExhausted, StoreError, StreamConflict
from chargeledger.core.events import ALLOCATOR_STREAM, TransactionIdsReserved
from chargeledger.core.store import Store

__all__ = ["MAX_TRANSACTION_ID", "TransactionIdAllocator"]

MAX_TRANSACTION_ID = 2**31 - 1
"""The largest id: OCPP 1.6 ``transactionId`` is a signed 32-bit integer."""


class TransactionIdAllocator:
    """Hands out 1.6 transaction ids 1, 2, ... unique across the store, never reused.

    Use it on the trio thread only. ``block_size`` ids are reserved per store write;
    ``node`` is recorded with each reservation (which process took it).
    """

    def __init__(self, store: Store, block_size: int = 100, node: str = "") -> None:
        if block_size < 1:
            raise ValueError("block_size must be at least 1")
        self._store = store
        self._block_size = block_size
        self._node = node
        self._next = 1
        self._last = 0  # the current block is _next.._last; empty until the first reservation
        self._lock = trio.Lock()

    async def allocate(self) -> int:
        """The next unused id.

        Waits for a block reservation (a store write in a worker thread) when the current
        block is used up; concurrent callers share that one reservation. Raises
        ``StoreUnavailable`` when the store cannot be read or written (no id is handed out;
        the next call tries again) and :class:`AllocatorExhausted` past ``MAX_TRANSACTION_ID``.
        Cancellation never loses track of a reservation: one in progress runs to completion
        and its block serves the next callers.
        """
        if self._next > self._last:
            async with self._lock:
                # Another task may have reserved a block while this one waited for the lock.
                if self._next > self._last:
                    self._next, self._last = await trio.to_thread.run_sync(self._reserve)
        # No checkpoint since the check above: no other task can take this id.
        allocated = self._next
        self._next += 1
        return allocated

    def _reserve(self) -> tuple[int, int]:
        """Reserve the block after the newest one in the store (worker thread).

        Retries on ``StreamConflict``: another process reserved that block first, and each
        conflict means somebody made progress. Raises ``StoreUnavailable`` and
        :class:`AllocatorExhausted` as :meth:`allocate` does.
        """
        while True:
            newest = self._store.last_event(ALLOCATOR_STREAM)
            version, reserved_up_to = 0, 0
            if newest is not None:
                version, event = newest
                if not isinstance(event, TransactionIdsReserved):
                    raise StoreError(f"unexpected {type(event).__name__} in {ALLOCATOR_STREAM}")
                reserved_up_to = event.last
            first = reserved_up_to + 1
            if first > MAX_TRANSACTION_ID:
                raise AllocatorExhausted(
                    f"all transaction ids up to {MAX_TRANSACTION_ID} have been reserved"
                )
            last = min(first + self._block_size - 1, MAX_TRANSACTION_ID)
            reservation = TransactionIdsReserved(
                first=first, last=last, at=time.time(), node=self._node
            )
            try:
                self._store.append([(ALLOCATOR_STREAM, version + 1, reservation)])
            except StreamConflict:
                continue
            return first, last
