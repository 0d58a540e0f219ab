"""The server: wires store, writer, dispatcher, allocator, plugins and gateway together, once.

A commit flows writer -> :class:`~chargeledger.core.dispatcher.CommitDispatcher` (fold, react,
feed); on a PostgreSQL store several nodes share, writer -> the log follower, which folds
every node's events in order -> :class:`~chargeledger.core.cluster.ClusterDispatcher`
(react to the events this node owns, feed; see ``docs/cluster.md``). The gateway is handed
the dispatcher's ``execute`` for the commands plugins return with their answers, and
:class:`~chargeledger.core.api.CentralSystem` is the one door for requests to stations.

:func:`run_server` is what ``chargeledger serve`` runs, and what tests and embedding programs
start with ``await nursery.start(run_server, settings)``; it hands back a
:class:`~chargeledger.core.api.CentralSystem` once the gateway listens.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from chargeledger.core.allocator import TransactionIdAllocator
from chargeledger.core.api import CentralSystem
from chargeledger.core.archive import merged_events
from chargeledger.core.cluster import ClusterDispatcher, Leadership
from chargeledger.core.dispatcher import CommitDispatcher
from chargeledger.core.drain import LINGER, run_drain
from chargeledger.core.errors import SessionFenced
from chargeledger.core.events import SessionClosed, session_stream
from chargeledger.core.feed import CommitFeed
from chargeledger.core.follower import FollowingWriter, LogFollower
from chargeledger.core.gateway import CLOSE_NO_STATUS, Gateway
from chargeledger.core.nodes import Nodes
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.core.store import Store, open_store
from chargeledger.core.writer import GroupCommitWriter
from chargeledger.projections import Views

__all__ = ["following", "run_server"]

log = logging.getLogger("chargeledger.server")


async def run_server(
    settings: Settings,
    *,
    web: Sequence[Any] = (),
    task_status: trio.TaskStatus[CentralSystem] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the CSMS until cancelled.

    Startup folds the whole log (``settings.archives`` and the store, merged by position)
    into the projections (off the trio thread), then records as closed the sessions this
    node left open when it last stopped without closing them (a crash, a kill -9), and
    those of other nodes presumed dead (``_close_dangling_sessions``).
    On cancellation every session is closed and recorded, and the writer is flushed before
    this returns: everything that was acknowledged is committed. A drain asked through
    ``CentralSystem.drain`` (``chargeledger.core.drain``) closes every session first, then
    returns the same way. With ``settings.api_port`` set the HTTP API is served too; its port is
    ``CentralSystem.api_port``; ``web`` are more Litestar route handlers it serves (the tools
    built on the API: ``chargeledger serve`` passes the operator console's).

    Raises ``StoreUnavailable`` when the store cannot be opened, ``ValueError`` for a bad
    store URL or plugin setting, ``OSError`` when the port cannot be bound.
    """
    store = await trio.to_thread.run_sync(open_store, settings.store)
    cluster = None
    try:
        views = await trio.to_thread.run_sync(_fold, store, settings.archives)
        _tune_garbage_collector()
        plugins = PluginHost(settings)
        feed = CommitFeed()
        cluster = following(store, views, plugins, feed, settings.node)
        dispatcher = CommitDispatcher(views, plugins, feed) if cluster is None else cluster[0]
        async with trio.open_nursery() as following_nursery:
            if cluster is None:
                writer = GroupCommitWriter(store, on_commit=dispatcher.on_commit)
            else:
                writer = cluster[2]
                await following_nursery.start(cluster[1].run)
            async with writer:
                # Which node holds each station, commands routed to it (docs/cluster.md).
                # Heartbeats say which nodes are dead (the nodes release those), not their
                # stations' silence.
                nodes = None if cluster is None else Nodes(store, writer, settings)
                timeout = settings.node_timeout if nodes is None else float("inf")
                await _close_dangling_sessions(writer, views, settings.node, timeout, time.time())
                allocator = TransactionIdAllocator(store, node=settings.node)
                if nodes is not None:
                    await nodes.start()
                gateway = Gateway(
                    settings, writer, allocator, plugins, views, dispatcher.execute, nodes
                )
                async with trio.open_nursery() as nursery:
                    port = await nursery.start(gateway.serve)
                    log.info(
                        "listening on ws://%s:%d/ (store %s, node %s, plugins %s)",
                        settings.host,
                        port,
                        settings.store,
                        settings.node,
                        ",".join(plugins.enabled),
                    )
                    csms = CentralSystem(
                        gateway=gateway,
                        writer=writer,
                        store=store,
                        feed=feed,
                        settings=settings,
                        port=port,
                        nodes=nodes,
                    )
                    if nodes is not None:
                        await nursery.start(nodes.run, csms.serve_routed)
                    nursery.start_soon(dispatcher.run, csms)
                    nursery.start_soon(_drain_then_stop, csms, nursery.cancel_scope)
                    if cluster is not None:
                        leadership = Leadership(store.url, worker=False)
                        nursery.start_soon(leadership.run, cluster[0].lead, cluster[0].step_down)
                    if settings.api_port is not None:
                        # Imported here: the web framework is loaded only when the API is
                        # served.
                        from chargeledger.core.http.server import serve_api

                        csms.api_port = await nursery.start(serve_api, csms, settings, web)
                    task_status.started(csms)
            following_nursery.cancel_scope.cancel()
    finally:
        # Shielded: we are usually here because of cancellation, and the store must close.
        with trio.CancelScope(shield=True):
            if cluster is not None:
                await trio.to_thread.run_sync(cluster[0].positions.close)
            await trio.to_thread.run_sync(store.close)
        log.info("stopped; store closed")


GC_THRESHOLDS = (50_000, 20, 100)
"""Generation thresholds for a long-running server: the default (700, 10, 10) spent ~40 % of
the server's CPU in collections under load (docs/performance.md), most of it in full
collections walking every live station's state, which is not garbage."""


def _tune_garbage_collector() -> None:
    """Freeze what startup built (the folded views) out of the collector's sight and collect
    less often; cycles still get collected, just in larger, rarer sweeps."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _fold(store: Store, archives: Sequence[str]) -> Views:
    """The views of the whole log: the archives (``chargeledger archive``) and the store."""
    return Views.replay(merged_events([Path(a) for a in archives], store.iter_all()))


async def _drain_then_stop(csms: CentralSystem, server: trio.CancelScope) -> None:
    """When a drain is asked (``csms.drain``), run it, then stop the server: the writer is
    flushed on the way out, as at any stop."""
    await csms.drain.requested.wait()
    csms.drain.report = await run_drain(csms.gateway, csms.settings.drain_timeout, csms.drain.code)
    await trio.sleep(LINGER)
    server.cancel()


def following(
    store: Store,
    views: Views,
    plugins: PluginHost,
    feed: CommitFeed,
    node: str,
    *,
    stations: bool = True,
) -> tuple[ClusterDispatcher, LogFollower, FollowingWriter] | None:
    """On a store several nodes share (PostgreSQL): the dispatcher, log follower and writer
    of a node following the log (:mod:`chargeledger.core.follower`,
    :mod:`chargeledger.core.cluster`), ``views`` folded up to where the follower starts;
    ``None`` on the others (one node: the writer hands its batches to the dispatcher)."""
    if not store.backend.shared:
        return None
    dispatcher = ClusterDispatcher(views, plugins, feed, store=store, node=node, stations=stations)
    follower = LogFollower(store, dispatcher.fold, views.position)
    return dispatcher, follower, FollowingWriter(store, follower, feed.count)


async def _close_dangling_sessions(
    writer: GroupCommitWriter, views: Views, node: str, node_timeout: float, now: float
) -> None:
    """Record as closed the sessions the log shows open that no live node holds.

    Those ``node`` (this node, starting) opened are closed: a node holds its sessions only
    while it runs. Another node's are closed when it is presumed dead: none of its open
    sessions recorded an inbound frame or its opening within ``node_timeout`` seconds before
    ``now``. That is the node's heartbeat, kept simple: a live station sends something at
    least every heartbeat interval, so a node with a live station keeps recording. A node
    with no open session has nothing to close. A live node whose stations all stayed silent
    that long is presumed dead by mistake: its sessions are recorded closed while they run
    (the log says so, the station's next frames are still recorded); hence the timeout is a
    setting, to keep above the heartbeat interval. Recorded with code 1006, by ``csms``.
    """
    open_sessions = [
        station
        for station in views.stations.all()
        if station.connected and station.session is not None
    ]
    activity: dict[str, float] = {}
    for station in open_sessions:
        seen = max(station.last_seen or 0.0, station.connected_at or 0.0)
        activity[station.node] = max(activity.get(station.node, 0.0), seen)
    closes: list[tuple[str, SessionClosed]] = []
    for station in open_sessions:
        assert station.session is not None
        if station.node == node:
            reason = "server stopped without closing the session"
        elif now - activity[station.node] >= node_timeout:
            reason = f"node {station.node!r} recorded nothing for {node_timeout:g} s: presumed dead"
        else:
            continue
        closed = SessionClosed(
            station=station.station,
            session=station.session,
            at=now,
            code=CLOSE_NO_STATUS,
            reason=reason,
            by="csms",
        )
        closes.append((session_stream(station.session), closed))
    if closes:
        log.info("closing %d session(s) left open by stopped nodes", len(closes))
        try:
            await writer.append(closes)
        except SessionFenced:  # another node closed some of them meanwhile (docs/cluster.md)
            for close in closes:
                with contextlib.suppress(SessionFenced):
                    await writer.append([close])
