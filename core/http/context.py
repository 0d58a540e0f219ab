"""What every route handler gets: the running server's handle, the commit feed, store reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from chargeledger.core.api import CentralSystem
from chargeledger.core.feed import CommitFeed

__all__ = ["STORE_READERS", "ApiContext"]

T = TypeVar("T")

STORE_READERS = 4
"""Worker threads the API may use at once for store reads. Its own limiter, so that many
event-stream consumers never take the threads the gateway's allocator needs."""


@dataclass
class ApiContext:
    """The server's handle (``csms``: views, store, gateway), the commit feed and the
    limiter of the API's store reads. ``stream_idle_seconds`` is how long the event stream
    waits for a commit of this node before reading again (events of other nodes) and sending
    a keepalive comment."""

    csms: CentralSystem
    stream_idle_seconds: float = 10.0
    limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(STORE_READERS)
    )

    @property
    def feed(self) -> CommitFeed:
        """The server's commit feed (``csms.feed``)."""
        return self.csms.feed

    async def read_store(
        self, read: Callable[..., T], *args: object, abandon_on_cancel: bool = False
    ) -> T:
        """Run the blocking store read ``read(*args)`` on a worker thread; raises what it
        raises (``StoreUnavailable`` when the store is down). Cancelling the caller waits for
        the read to end, unless ``abandon_on_cancel`` (the thread then finishes unobserved)."""
        return await trio.to_thread.run_sync(
            read, *args, limiter=self.limiter, abandon_on_cancel=abandon_on_cancel
        )
