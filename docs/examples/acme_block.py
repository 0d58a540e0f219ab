"""Example functional block: ACME's display DataTransfer and heartbeat policy.

Written against the public plugin contract only (``chargeledger.core.plugin``). Two hooks,
both pure:

* answer the DataTransfer messages of our own vendor id (everything else still gets
  ``UnknownVendorId`` from the built-in block);
* ask every 1.6 station that connects for its configuration and, when its answer shows a
  ``HeartbeatInterval`` other than ours (``[plugins.acme_block] heartbeat_interval``,
  default 300 seconds), set ours.
"""

from __future__ import annotations

from chargeledger.core.plugin import (
    OCPP16,
    Command,
    Exchange,
    InboundCall,
    Recorded,
    Reply,
    SendCall,
    SessionOpened,
    Settings,
    answers,
    as_dict,
    as_list,
    as_str,
    hookimpl,
    plugin_options,
)

VENDOR_ID = "com.acme.display"


@hookimpl
@answers("DataTransfer")
def chargeledger_answer_call(call: InboundCall) -> list[Command] | None:
    if call.payload.vendor_id != VENDOR_ID:
        return None  # not ours: let the other blocks answer
    return [Reply({"status": "Accepted", "data": "shown"})]


@hookimpl
def chargeledger_react(
    recorded: Recorded, exchange: Exchange | None, settings: Settings
) -> list[Command]:
    event = recorded.event
    if isinstance(event, SessionOpened) and event.protocol == OCPP16:
        return [SendCall(event.station, "GetConfiguration", {})]
    if exchange is None or exchange.origin != "out" or exchange.action != "GetConfiguration":
        return []  # only the station's answer to our GetConfiguration interests us
    wanted = str(plugin_options(settings, "acme_block").get("heartbeat_interval", 300))
    for item in as_list(as_dict(exchange.response).get("configurationKey")):
        key, value = as_str(as_dict(item).get("key")), as_str(as_dict(item).get("value"))
        if key == "HeartbeatInterval" and value != wanted:
            change = {"key": "HeartbeatInterval", "value": wanted}
            return [SendCall(exchange.station, "ChangeConfiguration", change)]
    return []
