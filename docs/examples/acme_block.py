"""Example functional block: ACME's display DataTransfer and configuration refresh.

Two hooks, both pure: answer the DataTransfer messages of our own vendor id (everything
else still gets ``UnknownVendorId`` from the built-in block), and ask every station that
connects for its configuration, so the stations projection holds its current keys.
"""

from __future__ import annotations

from chargeledger.core.commands import Command, Reply, SendCall
from chargeledger.core.events import Recorded, SessionOpened
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall

VENDOR_ID = "com.acme.display"


@hookimpl
def chargeledger_answer_call(call: InboundCall) -> list[Command] | None:
    if call.action != "DataTransfer" or call.payload.vendor_id != VENDOR_ID:
        return None  # not ours: let the other blocks answer
    return [Reply({"status": "Accepted", "data": "shown"})]


@hookimpl
def chargeledger_react(recorded: Recorded) -> list[Command]:
    event = recorded.event
    if isinstance(event, SessionOpened) and event.protocol == "ocpp1.6":
        return [SendCall(event.station, "GetConfiguration", {})]
    return []
