"""The plugin contract: every hook a functional-block plugin can implement.

Read this file to learn the whole extension surface. A plugin is a module (or object) with
functions decorated ``@hookimpl`` whose names match the specifications below; it may implement
any subset, and each implementation may accept any subset of a hook's parameters.

Rules every implementation follows:

* **Synchronous and pure.** No I/O, no clock, no randomness, no ``async def`` (pluggy would
  return an un-awaited coroutine, silently breaking ``firstresult``). Time comes from
  ``call.at`` or ``recorded.event.at``. That is what lets ``chargeledger replay --what-if``
  re-run a recorded log through today's plugins.
* **Return commands, do not perform them.** See :mod:`chargeledger.core.commands`.
* **Read state through ``views`` only.** Views are the projections as of the last committed
  event; treat them as read-only.

Ordering is by ``tryfirst`` / ``trylast`` on ``@hookimpl``, never by registration order.
"""

# Hook specifications have docstrings for bodies, like pytest's.
# mypy: disable-error-code="empty-body"
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from chargeledger.core.commands import Command
    from chargeledger.core.events import Recorded
    from chargeledger.core.plugin_host import InboundCall
    from chargeledger.core.settings import Settings
    from chargeledger.projections import Views

PROJECT = "chargeledger"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------
# Answering the station
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def chargeledger_answer_call(
    call: InboundCall, views: Views, settings: Settings
) -> list[Command] | None:
    """Decide how to answer a CALL the station sent.

    Called once per inbound CALL whose frame and payload are valid for the station's
    protocol version (invalid ones are answered by the core with the version's error code),
    and which is not a verbatim retransmission (those get the recorded earlier answer).

    :param call: the CALL: station, session, protocol, message id, action, typed payload
        (a :mod:`chargeledger.schemas` struct) and the time it arrived.
    :param views: the projections as of the last committed event.
    :param settings: the server settings (boot policy, plugin options, ...).
    :return: ``None`` to let another plugin answer, or a list of commands holding exactly
        one answer (``Reply``, ``ReplyError`` or ``ReplyWithNewTransactionId``) and possibly
        further commands (``SendCall``, ``CloseSession``) carried out after the answer is
        committed and sent.

    Stops at the first non-``None`` result (``firstresult``). Use ``tryfirst`` for gates that
    must see every call first (the boot gate) and ``trylast`` for defaults that others may
    override: the data-transfer block answers ``UnknownVendorId`` with ``trylast``, so a
    vendor-extension plugin simply answers the DataTransfer calls whose ``vendorId`` it owns.
    When no plugin answers, the core replies ``NotSupported`` (an action the protocol version
    does not define at all gets ``NotImplemented`` before any plugin is asked).
    """


# -------------------------------------------------------------------------
# Reacting to what happened
# -------------------------------------------------------------------------


@hookspec
def chargeledger_react(recorded: Recorded, views: Views, settings: Settings) -> list[Command]:
    """React to a committed event (a frame in either direction, a session opening or closing,
    a timed-out call).

    Called once per event, in log order, after it is committed and folded into ``views``.
    Typical uses: configure a station once its boot is answered ``Pending``, send a
    ``SendCall`` when a station's answer to an earlier call arrives.

    :return: commands for the executor (``SendCall``, ``CloseSession``); an empty list when
        there is nothing to do. The results of all plugins are concatenated.
    """
