"""``chargeledger worker``: the leader of the nodes sharing a PostgreSQL store, holding no
station.

It follows the log like a node (:mod:`chargeledger.core.follower`), takes the leader lock
with priority (:class:`~chargeledger.core.cluster.Leadership`), and so runs every reaction
to events no station session owns and every timer: reservation expiry, firmware campaign
steps, site allocation raises, operators' changes. It accepts no station and listens on no
port; the ``SendCall`` commands of its reactions go through the one door
(:class:`~chargeledger.core.api.CentralSystem`) like any node's.

Its position is tracked: the reactions' position in ``chargeledger_positions``. At start it
folds the log up to that position, waits for the lead (a second worker waits here, on
standby), folds on to the position its predecessor saved on yielding, and from there reacts
to each event as it folds it, with the views as of that event. Killed, it loses nothing:
the events after the saved position are reacted to again, and what their reactions did
already is not done twice (see :mod:`chargeledger.core.cluster`).

An :class:`Observer` (``chargeledger worker``'s: the audit,
:class:`chargeledger.core.audit.report.WorkerAudit`) sees each event of the log once folded,
from the start, and runs beside the reactions while leading (docs/cluster.md, "Audits").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio

from chargeledger.core.allocator import TransactionIdAllocator
from chargeledger.core.api import CentralSystem
from chargeledger.core.cluster import REACTIONS, ClusterDispatcher, Leadership
from chargeledger.core.events import Recorded
from chargeledger.core.feed import CommitFeed
from chargeledger.core.follower import FollowingWriter, LogFollower, prepare_cluster_tables
from chargeledger.core.gateway import Gateway
from chargeledger.core.nodes import Nodes
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.core.store import Store, backend_for, open_store
from chargeledger.projections import Views

__all__ = ["Observer", "run_worker"]

log = logging.getLogger("chargeledger.worker")


class Observer(Protocol):
    """What watches the worker's fold: each event once its views folded it, from the
    start of the log (the ``chargeledger worker`` command's audit:
    :class:`chargeledger.core.audit.report.WorkerAudit`)."""

    def observe(self, recorded: Recorded) -> None:
        """Take the next event of the log, folded into the views (trio thread, or the
        thread of the initial fold, before :meth:`run`)."""

    async def run(self) -> None:
        """Run beside the reactions while leading, until cancelled."""


async def run_worker(
    settings: Settings,
    *,
    observer: Callable[[Views, Store, str], Observer] | None = None,
    task_status: trio.TaskStatus[CentralSystem] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the worker on ``settings.store`` until cancelled; hands ``task_status`` its
    :class:`~chargeledger.core.api.CentralSystem` (no station is ever connected to it) once
    it leads and follows the log.

    ``observer(views, store, node)``, when given, makes what watches its fold (the audit).

    Raises ``ValueError`` for a store several nodes cannot share (SQLite, memory: one node
    does everything there), ``StoreUnavailable`` when the store cannot be opened.
    """
    if not backend_for(settings.store).shared:
        raise ValueError(
            f"the worker needs a store several nodes share (PostgreSQL), not {settings.store}"
        )
    store = await trio.to_thread.run_sync(open_store, settings.store)
    dispatcher: ClusterDispatcher | None = None
    try:
        await trio.to_thread.run_sync(prepare_cluster_tables, store.url)
        plugins = PluginHost(settings)
        feed = CommitFeed()
        views = Views()
        dispatcher = ClusterDispatcher(
            views, plugins, feed, store=store, node=settings.node, stations=False
        )
        # The audit of everything folded: the views' fold, observed (docs/cluster.md).
        watcher = None if observer is None else observer(views, store, settings.node)
        if watcher is not None:
            dispatcher.observe = watcher.observe
        saved = await trio.to_thread.run_sync(dispatcher.positions.load, REACTIONS)
        await trio.to_thread.run_sync(_fold_to, store, dispatcher, saved)
        leading = trio.Event()
        started = False

        async def on_lead() -> None:
            if started:  # the lead lost and taken again while running
                await dispatcher.lead()
            else:
                leading.set()

        async with trio.open_nursery() as nursery:
            leadership = Leadership(store.url, worker=True)
            nursery.start_soon(leadership.run, on_lead, dispatcher.step_down)
            log.info("folded to position %d; waiting for the lead", views.position)
            await leading.wait()
            # The position the previous leader saved when it yielded: fold on to it without
            # reacting (it did), then react to everything after it as it is folded.
            saved = await trio.to_thread.run_sync(dispatcher.positions.load, REACTIONS)
            await trio.to_thread.run_sync(_fold_to, store, dispatcher, saved)
            await dispatcher.lead(catch_up=False)
            started = True
            follower = LogFollower(store, dispatcher.fold, views.position)
            await nursery.start(follower.run)
            async with FollowingWriter(store, follower, feed.count) as writer:
                allocator = TransactionIdAllocator(store, node=settings.node)
                # Holding no station, it has every SendCall of its reactions routed to the
                # node holding the station (docs/cluster.md).
                nodes = Nodes(store, writer, settings)
                await nodes.start()
                gateway = Gateway(
                    settings, writer, allocator, plugins, views, dispatcher.execute, nodes
                )
                csms = CentralSystem(
                    gateway=gateway,
                    writer=writer,
                    store=store,
                    feed=feed,
                    settings=settings,
                    port=0,
                    nodes=nodes,
                )
                log.info(
                    "worker %s leads from position %d (store %s, plugins %s)",
                    settings.node,
                    views.position,
                    store.safe_url,
                    ",".join(plugins.enabled),
                )
                async with trio.open_nursery() as inner:
                    await inner.start(nodes.run, csms.serve_routed)
                    inner.start_soon(dispatcher.run, csms)
                    if watcher is not None:
                        inner.start_soon(watcher.run)
                    task_status.started(csms)
    finally:
        with trio.CancelScope(shield=True):
            if dispatcher is not None:
                await trio.to_thread.run_sync(dispatcher.positions.close)
            await trio.to_thread.run_sync(store.close)
        log.info("stopped; store closed")


def _fold_to(store: Store, dispatcher: ClusterDispatcher, position: int | None) -> None:
    """Fold the log into the dispatcher's views up to ``position`` (all of it: ``None``),
    reacting to nothing (not leading, holding no station). Blocking: off the trio thread."""
    views = dispatcher.views
    while position is None or views.position < position:
        events = store.read(views.position, 5000, position)
        if not events:
            return
        for recorded in events:
            views.apply(recorded)
            if dispatcher.observe is not None:
                dispatcher.observe(recorded)
