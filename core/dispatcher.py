"""The commit dispatcher: everything that follows a commit, in one place.

The group-commit writer hands each committed batch to :meth:`CommitDispatcher.on_commit`, on
the trio thread, in log order, before the batch's writers resume. For every event it

1. folds it into the live projections (``views``),
2. asks the plugins' react hooks what to do about it, and queues their commands,

then publishes the batch to the commit feed (waiters on new positions wake up). The queued
commands are carried out by :meth:`CommitDispatcher.run`: a ``SendCall`` goes through the one
door, :meth:`CentralSystem.call <chargeledger.core.api.CentralSystem.call>` (recorded as asked
by ``plugins``), a ``CloseSession`` closes the station's session, a ``StartTimer`` is recorded
(``TimerStarted``), waited for and recorded fired (``TimerFired``), which folds and reaches the
react hooks like any event. The wait is on the wall clock (``time.time()`` when the timer is
armed, not trio's clock), so a due time in an event means the same after a restart; timers
pending when the server stopped (``views.timers``) are re-armed when ``run`` starts, and one
already due fires at once. On a PostgreSQL store several nodes share,
:class:`~chargeledger.core.cluster.ClusterDispatcher` does this instead: each event is reacted
to on one node, and the leader keeps every node's timers (``docs/cluster.md``).

What goes wrong stays contained: a react hook that raises is logged and its event's other
reactions are lost, never the later events' (one plugin's bug must not stop the others); a
command that fails (station offline, timeout, CALLERROR, invalid payload, busy) is logged, and
its outcome is in the log already for plugins to see. Answers to a station's CALL never come
here: the session sends those itself, after their commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import trio

from chargeledger.core.api import PLUGINS, CentralSystem
from chargeledger.core.commands import CloseSession, Command, SendCall, StartTimer
from chargeledger.core.errors import (
    OutboundCallFailed,
    OutboundValidationError,
    StoreUnavailable,
)
from chargeledger.core.events import Recorded, TimerFired, TimerStarted, timer_stream
from chargeledger.core.feed import CommitFeed
from chargeledger.core.plugin_host import PluginHost
from chargeledger.projections import Views

__all__ = ["CommitDispatcher"]

log = logging.getLogger("chargeledger.dispatcher")

COMMAND_FAILURES = (
    OutboundCallFailed,
    OutboundValidationError,
    StoreUnavailable,
    PermissionError,
)
"""What a command to a station may fail with (``StoreUnavailable``: it could not be recorded,
so it was not sent; ``PermissionError``: plugins may not send it, e.g. a station password);
each is logged and the next command goes on."""


class CommitDispatcher:
    """Folds committed events, runs the react hooks, and executes the commands they return."""

    def __init__(self, views: Views, plugins: PluginHost, feed: CommitFeed) -> None:
        self.views = views
        self.plugins = plugins
        self.feed = feed
        self._send, self._receive = trio.open_memory_channel[Command](float("inf"))
        self._timers: dict[str, trio.CancelScope] = {}
        """The armed timers of this process, by name: a new start of a name cancels the wait
        of the old one."""

    def on_commit(self, batch: Sequence[Recorded]) -> None:
        """Fold ``batch`` (positions ascending), queue the plugins' reactions, publish it.
        Never raises: the writer calls it for batches that are committed already."""
        for recorded in batch:
            self.views.apply(recorded)
            try:
                self.execute(self.plugins.react(recorded, self.views))
            except Exception:
                log.exception("plugins failed to react to position %d", recorded.position)
        self.feed.publish(batch)

    def execute(self, commands: Sequence[Command]) -> None:
        """Queue ``commands`` for :meth:`run` (never blocks)."""
        for command in commands:
            self._send.send_nowait(command)

    async def run(self, csms: CentralSystem) -> None:
        """Carry out queued commands until cancelled, each ``SendCall`` in a task of its own
        (a station that never answers holds only its own), each timer in one of its own after
        the timers pending in the log are re-armed."""
        async with trio.open_nursery() as nursery:
            for name, due in self.views.timers.pending().items():
                self._arm(nursery, csms, StartTimer(name, due), record=False)
            async for command in self._receive:
                if isinstance(command, SendCall):
                    nursery.start_soon(self._send_call, csms, command)
                elif isinstance(command, StartTimer):
                    self._arm(nursery, csms, command, record=True)
                elif isinstance(command, CloseSession):
                    csms.close_session(command.station, command.code, command.reason)
                else:
                    log.error("command %r is only valid as an answer to a CALL", command)

    @staticmethod
    async def _send_call(csms: CentralSystem, command: SendCall) -> None:
        try:
            await csms.call(
                command.station,
                command.action,
                command.payload,
                caller=PLUGINS,
                request_id=command.request_id,
            )
        except COMMAND_FAILURES as exc:
            if isinstance(exc, OutboundCallFailed):  # it names the action and the station
                log.info("%s", exc)
            else:
                log.info("%s to %s: %s", command.action, command.station, exc)

    def _arm(
        self, nursery: trio.Nursery, csms: CentralSystem, command: StartTimer, *, record: bool
    ) -> None:
        """Start the task of timer ``command``, cancelling the pending one of the same name
        here, in command order: tasks may first run in any order, and the newest start must
        win."""
        previous = self._timers.pop(command.name, None)
        if previous is not None:
            previous.cancel()
        scope = trio.CancelScope()
        self._timers[command.name] = scope
        nursery.start_soon(self._timer, csms, command, record, scope)

    async def _timer(
        self, csms: CentralSystem, command: StartTimer, record: bool, scope: trio.CancelScope
    ) -> None:
        """Record ``TimerStarted`` (when ``record``: not for a timer re-armed from the log),
        wait until ``command.due`` by the wall clock, record ``TimerFired``. A later start of
        the same name cancels this wait; a failure to record is logged (a timer whose start
        could not be recorded is not armed; one whose firing could not be recorded stays
        pending in the log and is re-armed at the next start)."""
        stream = timer_stream(command.name)
        if scope.cancel_called:
            return  # replaced before it ran: a later start of the name is recorded instead
        with scope:
            try:
                if record:
                    started = TimerStarted(
                        name=command.name, due=command.due, at=time.time(), node=csms.node
                    )
                    await csms.writer.append([(stream, started)])
                await trio.sleep(max(0.0, command.due - time.time()))
                fired = TimerFired(
                    name=command.name, due=command.due, at=time.time(), node=csms.node
                )
                with trio.CancelScope(shield=True):  # fired: a re-start now would be too late
                    await csms.writer.append([(stream, fired)])
            except (StoreUnavailable, trio.ClosedResourceError) as exc:
                log.warning("timer %s: %s", command.name, exc)
            finally:
                if self._timers.get(command.name) is scope:
                    del self._timers[command.name]
