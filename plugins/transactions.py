"""Transactions (1.6 Core): StartTransaction, StopTransaction and MeterValues.

A StartTransaction that repeats one already answered (same station, connector, idTag,
timestamp and meterStart: a retransmission after a lost CALLRESULT) gets the id it got
before, never a second transaction. Every StopTransaction is acknowledged so the station can
drop it from its queue; what it means (a double stop, an unknown or sentinel id) is decided
by the transactions projection and shown there as an anomaly, never applied twice.
"""

from __future__ import annotations

from typing import Any

from chargeledger.core.commands import Command, Reply, ReplyWithNewTransactionId
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall
from chargeledger.core.settings import Settings
from chargeledger.plugins.authorization import id_tag_info
from chargeledger.projections import Views

__all__ = ["chargeledger_answer_call"]


def _start(call: InboundCall, views: Views, settings: Settings) -> list[Command]:
    start = call.payload
    info = id_tag_info(start.id_tag, settings)
    earlier = views.transactions.find_start(
        call.station, start.connector_id, start.id_tag, start.timestamp, start.meter_start
    )
    if earlier is not None:
        return [Reply({"transactionId": earlier.transaction_id, "idTagInfo": info})]
    return [ReplyWithNewTransactionId({"idTagInfo": info})]


def _stop(call: InboundCall, settings: Settings) -> list[Command]:
    id_tag = call.payload.id_tag
    answer: dict[str, Any] = {} if id_tag is None else {"idTagInfo": id_tag_info(id_tag, settings)}
    return [Reply(answer)]


@hookimpl
def chargeledger_answer_call(
    call: InboundCall, views: Views, settings: Settings
) -> list[Command] | None:
    if call.protocol != "ocpp1.6":
        return None
    if call.action == "StartTransaction":
        return _start(call, views, settings)
    if call.action == "StopTransaction":
        return _stop(call, settings)
    if call.action == "MeterValues":
        return [Reply({})]
    return None
