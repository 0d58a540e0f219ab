"""Event log routes: pages of the log by station, kind and time, and the resumable SSE stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery, HeaderParameter, QueryParameter
from litestar.response import Stream

from chargeledger.core.events import EVENT_TYPES, Recorded, logged_event
from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.models import EventPage
from chargeledger.core.http.problems import bad_request, responses
from chargeledger.core.store import Store

__all__ = ["PAGE", "ROUTES", "EventFilter", "scan", "unix_seconds"]

PAGE = 1000
"""Events read from the store at a time."""
SCAN_BUDGET = 20_000
"""Events one page request examines at most; a sparse filter returns fewer items than
``limit`` and a ``next`` cursor rather than reading the whole log in one request."""
TIME_SLACK = 300.0
"""Seconds an event's own time may precede that of an event committed before it (frames wait
for their group commit; nodes' clocks differ): time-range reads widen the range by this much
to find where to start and stop reading, then filter exactly."""

_json = msgspec.json.Encoder()


class EventFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which events a reader wants: of these stations and kinds (empty: all), with their own
    time (``at``, UNIX seconds) in ``[since, until]``."""

    stations: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    since: float | None = None
    until: float | None = None

    def matches(self, recorded: Recorded) -> bool:
        event = recorded.event
        at = getattr(event, "at", None)
        return (
            (not self.stations or getattr(event, "station", None) in self.stations)
            and (not self.kinds or type(event).__name__ in self.kinds)
            and (self.since is None or (at is not None and at >= self.since))
            and (self.until is None or (at is not None and at <= self.until))
        )


def _start(store: Store, since: float) -> int:
    """A position after which every event at ``since`` or later lies: the last one found
    (by bisection) older than ``since - TIME_SLACK``; 0 when there is none."""
    low, high = 0, store.max_position()
    while low < high:
        middle = (low + high + 1) // 2
        found = store.read(middle - 1, 1)
        at = getattr(found[0].event, "at", None) if found else None
        if at is not None and at < since - TIME_SLACK:
            low = found[0].position
        else:
            high = middle - 1
    return low


def scan(
    store: Store, after: int, limit: int, wanted: EventFilter, budget: int = SCAN_BUDGET
) -> tuple[list[Recorded], int, bool]:
    """Read the log after ``after`` for up to ``limit`` events that ``wanted`` matches,
    examining at most about ``budget`` events; blocking (run it on a worker thread).

    Returns the matches, the position examined up to, and whether the end was reached (of the
    log, or of ``wanted``'s time range). Raises like :meth:`Store.read`."""
    if wanted.since is not None:
        after = max(after, _start(store, wanted.since))
    found: list[Recorded] = []
    examined = 0
    while True:
        page = store.read(after, PAGE)
        for recorded in page:
            at = getattr(recorded.event, "at", None)
            if wanted.until is not None and at is not None and at > wanted.until + TIME_SLACK:
                return found, after, True
            after = recorded.position
            if wanted.matches(recorded):
                found.append(recorded)
                if len(found) == limit:
                    return found, after, False
        examined += len(page)
        if len(page) < PAGE:
            return found, after, True
        if examined >= budget:
            return found, after, False


def _filter(
    station: list[str] | None,
    kind: list[str] | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EventFilter:
    unknown = sorted(set(kind or ()) - set(EVENT_TYPES))
    if unknown:
        raise bad_request(f"unknown event kind(s) {unknown}; known: {sorted(EVENT_TYPES)}")
    return EventFilter(
        stations=frozenset(station or ()),
        kinds=frozenset(kind or ()),
        since=unix_seconds(since),
        until=unix_seconds(until),
    )


def unix_seconds(moment: datetime | None) -> float | None:
    """UNIX seconds of ``moment``; a time without a zone is UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@get(
    "/api/events",
    guards=[requires("read")],
    responses=responses(400, 401, 403, 503),
    tags=["events"],
)
async def events(
    ctx: NamedDependency[ApiContext],
    station: FromQuery[list[str] | None] = None,
    kind: FromQuery[list[str] | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    after: Annotated[int, QueryParameter(ge=0)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=PAGE)] = 100,
) -> EventPage:
    """The event log in position order, frames verbatim: events after position ``after``,
    of the given ``station``s and ``kind``s (repeat the parameter for several), whose own
    time is within ``[since, until]`` (RFC 3339; UTC when no offset is given).

    A page may hold fewer than ``limit`` items (a sparse filter stops after examining
    20 000 events); continue with ``after=next`` until ``next`` is ``null``."""
    wanted = _filter(station, kind, since, until)
    found, last, ended = await ctx.read_store(scan, ctx.csms.store, after, limit, wanted)
    return EventPage(items=[logged_event(r) for r in found], next=None if ended else last)


@get(
    "/api/stream",
    guards=[requires("read")],
    responses=responses(400, 401, 403),
    tags=["events"],
    media_type="text/event-stream",
)
async def stream(
    ctx: NamedDependency[ApiContext],
    station: FromQuery[list[str] | None] = None,
    kind: FromQuery[list[str] | None] = None,
    after: Annotated[int | None, QueryParameter(ge=0)] = None,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
) -> Stream:
    """Server-Sent Events: every event committed after a position, live, forever.

    Starts after ``Last-Event-ID`` (what a reconnecting EventSource sends) or else ``after``
    (default: the current end of the log, i.e. only new events). Each message has the
    event's log position as ``id``, its kind as ``event`` and the ``LoggedEvent`` JSON as
    ``data``: a consumer that reconnects with its last id misses nothing and sees nothing
    twice. Filters as for ``/api/events``. A comment line is sent when idle, as keepalive.
    """
    wanted = _filter(station, kind)
    if last_event_id is not None:
        try:
            start = int(last_event_id)
        except ValueError:
            raise bad_request(f"Last-Event-ID {last_event_id!r} is not a log position") from None
    elif after is not None:
        start = after
    else:
        start = await ctx.read_store(ctx.csms.store.max_position)
    return Stream(
        _messages(ctx, start, wanted),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse_page(store: Store, after: int, wanted: EventFilter) -> tuple[bytes, int, bool]:
    """The next page of the stream, encoded (on the worker thread, not the trio thread): one
    SSE message per matching event, its position as ``id``, its kind as ``event``, its
    ``LoggedEvent`` JSON as ``data`` (one line: JSON escapes line breaks). Returns it with
    the position read up to and whether the end of the log was reached."""
    found, after, caught_up = scan(store, after, PAGE, wanted, PAGE)
    text = b"".join(
        b"id: %d\nevent: %s\ndata: %s\n\n"
        % (r.position, type(r.event).__name__.encode(), _json.encode(logged_event(r)))
        for r in found
    )
    return text, after, caught_up


async def _messages(ctx: ApiContext, after: int, wanted: EventFilter) -> AsyncIterator[bytes]:
    """The stream's body: a page read from the store at a time, at the client's pace (each
    chunk waits until the client took the previous one, so memory stays bounded), then a wait
    for a commit once caught up."""
    while True:
        text, after, caught_up = await ctx.read_store(_sse_page, ctx.csms.store, after, wanted)
        if text:
            yield text
        if caught_up and not await ctx.feed.wait_beyond(after, ctx.stream_idle_seconds):
            yield b": keepalive\n\n"


ROUTES = [events, stream]
