"""Health routes: liveness, readiness (for load balancers), Prometheus metrics, and the
node's drain (docs/operations.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import trio
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from chargeledger.core.errors import StoreUnavailable
from chargeledger.core.gateway import GatewayStatistics
from chargeledger.core.http.auth import requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.models import DrainRequest, DrainStarted, Readiness
from chargeledger.core.http.problems import not_ready_problem, responses, store_problem
from chargeledger.projections import StationMeters

__all__ = ["READY_TIMEOUT", "ROUTES", "ServerCollector", "metrics_registry"]

log = logging.getLogger("chargeledger.drain")

READY_TIMEOUT = 5.0
"""Seconds the store may take to answer the readiness probe."""


@get("/health/live", opt={"public": True}, security=[{}], tags=["health"])
async def live() -> dict[str, str]:
    """Liveness: the process serves HTTP (no authentication)."""
    return {"status": "ok"}


@get(
    "/health/ready", opt={"public": True}, security=[{}], responses=responses(503), tags=["health"]
)
async def ready(ctx: NamedDependency[ApiContext]) -> Readiness:
    """Readiness, for load balancers (no authentication): 200 when this node takes stations,
    i.e. it is not draining, its gateway listens and the event store answers within 5 s;
    503 otherwise (``not-ready`` or ``store-unavailable``)."""
    csms = ctx.csms
    if csms.gateway.draining or csms.drain.requested.is_set():
        raise not_ready_problem(f"node {csms.node} is draining")
    if csms.gateway.listen_port is None:
        raise not_ready_problem(f"node {csms.node} does not listen for stations")
    try:
        with trio.fail_after(READY_TIMEOUT):
            position = await ctx.read_store(csms.store.max_position, abandon_on_cancel=True)
    except trio.TooSlowError:
        raise store_problem(StoreUnavailable("the store did not answer in time")) from None
    return Readiness(
        ready=True, position=position, node=csms.node, stations=len(csms.gateway.sessions)
    )


@post(
    "/api/node/drain",
    guards=[requires("admin")],
    status_code=202,
    responses=responses(401, 403),
    tags=["health"],
)
async def drain(
    ctx: NamedDependency[ApiContext],
    request: Request[Any, Any, Any],
    data: JSONBody[DrainRequest | None] = None,
) -> DrainStarted:
    """Drain this node for a rolling restart (``admin``): readiness turns 503 at once, the
    gateway stops listening, every station's session is closed with ``code`` (1012 "service
    restart" by default, or 1001) once it is idle, at the latest after ``drain_timeout``
    seconds, each close recorded; then the server stops and ``serve`` exits with status 0.
    Asking again while it drains changes nothing (``started: false``)."""
    csms = ctx.csms
    code = (data or DrainRequest()).code
    started = csms.drain.request(code)
    if started:
        caller = request.user
        log.info("drain asked by %s (%s), close code %d", caller.name, caller.role, code)
    return DrainStarted(
        started=started,
        node=csms.node,
        code=csms.drain.code,
        stations=len(csms.gateway.sessions),
        timeout=csms.settings.drain_timeout,
    )


class ServerCollector(Collector):
    """Metrics of one running server, read at scrape time from counters it keeps anyway:
    the gateway's sessions, the commit feed, the writer's statistics."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterator[Metric]:
        gateway, feed = self._ctx.csms.gateway, self._ctx.feed
        sessions = list(gateway.sessions.values())
        writer = self._ctx.csms.writer.statistics()
        yield GaugeMetricFamily(
            "chargeledger_connected_stations",
            "Stations connected to this node.",
            value=len(sessions),
        )
        frames = CounterMetricFamily(
            "chargeledger_frames",
            "WebSocket frames recorded by this node, by direction (in: from stations).",
            labels=["direction"],
        )
        frames.add_metric(["in"], feed.frames_in)
        frames.add_metric(["out"], feed.frames_out)
        yield frames
        yield GaugeMetricFamily(
            "chargeledger_outstanding_calls",
            "CALLs to stations sent and unanswered, or queued behind one.",
            value=sum((s.in_flight is not None) + s.queued for s in sessions),
        )
        yield CounterMetricFamily(
            "chargeledger_call_timeouts",
            "CALLs to stations that got no answer in time (CallTimedOut).",
            value=feed.timeouts,
        )
        refusals = CounterMetricFamily(
            "chargeledger_handshake_refusals",
            "Station handshakes refused by this node, by cause (docs/security.md).",
            labels=["cause"],
        )
        for cause, count in sorted(feed.refusals.items()):
            refusals.add_metric([cause], count)
        yield refusals
        yield SummaryMetricFamily(
            "chargeledger_commit_batch_size",
            "Events per committed group-commit batch.",
            count_value=writer.batches,
            sum_value=writer.events,
        )
        yield SummaryMetricFamily(
            "chargeledger_commit_seconds",
            "Duration of group-commit batches (version lookups and the transaction).",
            count_value=writer.batches,
            sum_value=writer.avg_commit_seconds * writer.batches,
        )
        yield GaugeMetricFamily(
            "chargeledger_commit_last_seconds",
            "Duration of the last committed batch.",
            value=writer.last_commit_seconds,
        )
        yield CounterMetricFamily(
            "chargeledger_commit_failures",
            "Group-commit batches that failed (their waiters got StoreUnavailable).",
            value=writer.failed_batches,
        )
        yield GaugeMetricFamily(
            "chargeledger_draining",
            "1 while this node drains (readiness 503, sessions being closed), else 0.",
            value=int(gateway.draining),
        )
        yield GaugeMetricFamily(
            "chargeledger_log_position",
            "Position of the newest event this node committed.",
            value=feed.position,
        )
        yield from _limit_metrics(gateway.statistics())
        yield from _meter_metrics(self._ctx.csms.views.meters.all())


def _limit_metrics(stats: GatewayStatistics) -> Iterator[Metric]:
    """The gateway's limits, what they hold and what they refused (docs/operations.md)."""
    limits = GaugeMetricFamily(
        "chargeledger_limit", "Each configured limit's effective value.", labels=["limit"]
    )
    for name, value in stats.limits.items():
        limits.add_metric([name], value)
    yield limits
    yield GaugeMetricFamily(
        "chargeledger_connections", "Connections held, handshakes included.", stats.connections
    )
    yield GaugeMetricFamily(
        "chargeledger_handshakes_in_flight", "Handshakes not yet upgraded.", stats.handshakes
    )
    refused = CounterMetricFamily(
        "chargeledger_connections_refused",
        "Connections answered 503 for a limit, by the limit.",
        labels=["limit"],
    )
    for name in ("max_connections", "max_connections_per_address", "max_handshakes"):
        refused.add_metric([name], stats.refused.get(name, 0))
    yield refused
    ended = CounterMetricFamily(
        "chargeledger_handshakes_unfinished",
        "Connections closed before their upgrade: deadline passed, or the peer left.",
        labels=["why"],
    )
    ended.add_metric(["deadline"], stats.handshakes_timed_out)
    ended.add_metric(["peer_left"], stats.handshakes_abandoned)
    yield ended
    floods = CounterMetricFamily(
        "chargeledger_floods", "Sessions closed with 1008 for a flood.", labels=["kind"]
    )
    for kind in ("frames", "pings"):
        floods.add_metric([kind], stats.floods.get(kind, 0))
    yield floods
    yield GaugeMetricFamily(
        "chargeledger_retransmission_bytes",
        "What the retransmission memory costs (at most its total limit).",
        stats.retransmission_bytes,
    )
    yield GaugeMetricFamily(
        "chargeledger_retransmission_calls",
        "Answered CALLs remembered for retransmissions.",
        stats.retransmission_calls,
    )
    yield CounterMetricFamily(
        "chargeledger_retransmission_windows_dropped",
        "Station windows dropped to keep the retransmission memory within its total.",
        value=stats.retransmission_dropped,
    )


def _meter_metrics(meters: list[StationMeters]) -> Iterator[Metric]:
    """The latest reading of every station meter (the meter projection): one sample per
    station, connector (EVSE; 0: the main meter), measurand, phase (empty: none), location and
    unit."""
    readings = GaugeMetricFamily(
        "chargeledger_meter_reading",
        "The latest reading of each station meter (MeterValues and TransactionEvent), in unit.",
        labels=["station", "connector", "measurand", "phase", "location", "unit"],
    )
    for station in meters:
        for reading in station.readings():
            labels = [
                station.station,
                str(reading.connector_id),
                reading.measurand,
                reading.phase or "",
                reading.location,
                reading.unit or "",
            ]
            readings.add_metric(labels, reading.value)
    yield readings


def metrics_registry(ctx: ApiContext) -> CollectorRegistry:
    """A registry of this server's metrics only (not the process-wide default registry, so
    several servers in one process, as in tests, do not collide)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(ctx))
    return registry


@get(
    "/metrics",
    guards=[requires("read")],
    responses=responses(401, 403),
    tags=["health"],
    media_type="text/plain; version=0.0.4",
)
async def metrics(
    registry: NamedDependency[CollectorRegistry], request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Prometheus text exposition, or OpenMetrics when the scraper asks for it (needs a
    ``read`` key: Prometheus sends it with ``authorization: {credentials: ...}``)."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), headers={"content-type": content_type})


ROUTES = [live, ready, metrics, drain]
