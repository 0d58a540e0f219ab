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

from chargeledger.core.plugin import (
    Command,
    InboundCall,
    Reply,
    ReplyWithNewTransactionId,
    Settings,
    Views,
    answers,
    hookimpl,
)
from chargeledger.plugins.authorization import id_tag_info, token_answer

__all__ = ["chargeledger_answer_call"]


def _start(call: InboundCall, views: Views, settings: Settings) -> list[Command]:
    start = call.payload
    earlier = views.transactions.find_start(
        call.station, start.connector_id, start.id_tag, start.timestamp, start.meter_start
    )
    current = None if earlier is None else (call.station, earlier.transaction_id)
    info = id_tag_info(start.id_tag, settings, call.at, views, current=current)
    if earlier is not None:
        return [Reply({"transactionId": earlier.transaction_id, "idTagInfo": info})]
    return [ReplyWithNewTransactionId({"idTagInfo": info})]


@hookimpl
@answers("MeterValues")
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]


@hookimpl(specname="chargeledger_answer_call")
@answers("StopTransaction", "TransactionEvent")
def answer_with_token(call: InboundCall, views: Views, settings: Settings) -> list[Command]:
    """Acknowledge, with the token's status when the CALL carries one (from the registry in
    ``views``, see plugins/authorization.py)."""
    return [Reply(token_answer(call, settings, views))]


@hookimpl(specname="chargeledger_answer_call")
@answers("StartTransaction")
def answer_start(call: InboundCall, views: Views, settings: Settings) -> list[Command]:
    """A 1.6 start: the id it got before when it repeats an answered one, else a new id."""
    return _start(call, views, settings)
