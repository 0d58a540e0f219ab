"""The tariff and cost block's use cases (docs/tariffs.md): telling a station what a running
transaction costs, in either version.

* 2.0.1: ``CostUpdated`` (I02): ``totalCost`` and ``transactionId``.
* 1.6: the California Pricing convention of the Open Charge Alliance: a ``DataTransfer``
  with vendor id ``org.openchargealliance.costmsg``, message id ``RunningCost`` while the
  transaction runs and ``FinalCost`` when it has ended, its ``data`` a JSON text
  (``RunningCost``: ``transactionId``, ``timestamp``, ``meterValue`` in Wh, ``cost``,
  ``state`` ``Charging`` or ``Idle``, ``chargingPrice`` with ``kWhPrice`` / ``hourPrice`` /
  ``flatFee``, ``idlePrice`` with ``hourPrice``; ``FinalCost``: ``transactionId``, ``cost``,
  ``priceText``, ``qrCodeText``). Amounts are written as JSON numbers from their decimal
  text, never through a float.

The builders are pure; the ``tariffs`` plugin returns their requests as ``SendCall`` for
running transactions, and an operator can send one through the one door (``cost_updated``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from chargeledger.core.errors import InvalidUseCaseArguments
from chargeledger.core.usecase_base import Request, UseCase, UseCaseArgs, UseCaseResult, present
from chargeledger.schemas import OCPP16, OCPP201

__all__ = [
    "COSTMSG_VENDOR",
    "USE_CASES",
    "CostUpdatedArgs",
    "cost_updated",
    "final_cost",
]

COSTMSG_VENDOR = "org.openchargealliance.costmsg"
"""The DataTransfer vendor id of California Pricing for OCPP 1.6."""

_DATA = msgspec.json.Encoder(decimal_format="number")


class CostUpdatedArgs(UseCaseArgs, tag="cost_updated"):
    """Tell the station the running total cost (tax included) of a transaction: 2.0.1
    `CostUpdated`; 1.6 a `DataTransfer` `org.openchargealliance.costmsg` `RunningCost`
    (California Pricing), which needs `timestamp` and `meter_wh` too."""

    transaction_id: int | str
    total_cost: Decimal
    timestamp: str | None = None
    """1.6: RFC 3339, the moment the cost is for."""
    meter_wh: int | None = None
    """1.6: the energy register reading (Wh) the cost is for."""
    state: Literal["Charging", "Idle"] = "Charging"
    kwh_price: Decimal | None = None
    hour_price: Decimal | None = None
    flat_fee: Decimal | None = None
    idle_hour_price: Decimal | None = None


def cost_updated(protocol: str, args: CostUpdatedArgs) -> Request:
    """The request telling a station a transaction's running cost (see the module)."""
    if not args.total_cost.is_finite() or args.total_cost < 0:
        raise InvalidUseCaseArguments(f"total_cost {args.total_cost} is not an amount")
    if protocol != OCPP16:
        payload = {"totalCost": float(args.total_cost), "transactionId": str(args.transaction_id)}
        return Request(protocol, "CostUpdated", payload, _received)
    if type(args.transaction_id) is not int or args.timestamp is None or args.meter_wh is None:
        raise InvalidUseCaseArguments(
            "OCPP 1.6 RunningCost needs an integer transaction_id, timestamp and meter_wh"
        )
    data: dict[str, Any] = {
        "transactionId": args.transaction_id,
        "timestamp": args.timestamp,
        "meterValue": args.meter_wh,
        "cost": args.total_cost,
        "state": args.state,
        "chargingPrice": present(
            kWhPrice=args.kwh_price, hourPrice=args.hour_price, flatFee=args.flat_fee
        ),
    }
    if args.idle_hour_price is not None:
        data["idlePrice"] = {"hourPrice": args.idle_hour_price}
    return _costmsg(protocol, "RunningCost", data)


def _received(response: dict[str, Any]) -> UseCaseResult:
    """CostUpdated's answer says nothing but that the station received it."""
    return UseCaseResult(
        protocol=OCPP201, action="CostUpdated", status="Accepted", accepted=True, response=response
    )


def final_cost(
    transaction_id: int, total_cost: Decimal, price_text: str, qr_code_text: str = ""
) -> Request:
    """1.6 ``FinalCost``: an ended transaction's cost, with the text shown beside it."""
    data = {
        "transactionId": transaction_id,
        "cost": total_cost,
        "priceText": price_text,
        "qrCodeText": qr_code_text,
    }
    return _costmsg(OCPP16, "FinalCost", data)


def _costmsg(protocol: str, message_id: str, data: dict[str, Any]) -> Request:
    payload = {
        "vendorId": COSTMSG_VENDOR,
        "messageId": message_id,
        "data": _DATA.encode(data).decode(),
    }
    return Request(protocol, "DataTransfer", payload)


USE_CASES: tuple[UseCase[Any], ...] = (
    UseCase[CostUpdatedArgs](
        "cost_updated", CostUpdatedArgs, lambda protocol, a, _: cost_updated(protocol, a)
    ),
)
