"""Transactions and meter values (1.6 Core; 2.0.1 E and J): StartTransaction, StopTransaction,
TransactionEvent and MeterValues.

A StartTransaction that repeats one already answered (same station, connector, idTag,
timestamp and meterStart: a retransmission after a lost CALLRESULT) gets the id it got
before, never a second transaction. Every StopTransaction is acknowledged so the station can
drop it from its queue; what it means (a double stop, an unknown or sentinel id) is decided
by the transactions projection and shown there as an anomaly, never applied twice.

Every 2.0.1 TransactionEvent is acknowledged too, with ``idTokenInfo`` when it carries a token
(E01): a duplicated, out-of-order or late event is the projection's business (an anomaly and
the transaction's completeness), and refusing it would only make the station send it again.
MeterValues outside a transaction (2.0.1 J, 1.6 without ``transactionId``) is acknowledged.
"""

from __future__ import annotations

from chargeledger.core.commands import Command, Reply, ReplyWithNewTransactionId
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall
from chargeledger.core.settings import Settings
from chargeledger.plugins.authorization import id_tag_info, token_answer
from chargeledger.projections import Views

__all__ = ["chargeledger_answer_call"]


def _start(call: InboundCall, views: Views, settings: Settings) -> list[Command]:
    start = call.payload
    info = id_tag_info(start.id_tag, settings, call.at)
    earlier = views.transactions.find_start(
        call.station, start.connector_id, start.id_tag, start.timestamp, start.meter_start
    )
    if earlier is not None:
        return [Reply({"transactionId": earlier.transaction_id, "idTagInfo": info})]
    return [ReplyWithNewTransactionId({"idTagInfo": info})]


@hookimpl
def chargeledger_answer_call(
    call: InboundCall, views: Views, settings: Settings
) -> list[Command] | None:
    if call.action == "MeterValues":
        return [Reply({})]
    if call.action in ("StopTransaction", "TransactionEvent"):
        return [Reply(token_answer(call, settings))]
    if call.action == "StartTransaction":
        return _start(call, views, settings)
    return None
