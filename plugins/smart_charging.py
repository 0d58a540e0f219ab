"""Smart charging (1.6 Smart Charging, 2.0.1 K): the station CALLs of block K answered, and
ISO 15118 charging needs met with a TxProfile.

Answers (the charging-profile projection folds each one, see
``chargeledger.projections.charging_profiles``):

* ``ReportChargingProfiles``, ``NotifyChargingLimit``, ``ClearedChargingLimit``: acknowledged.
* ``NotifyEVChargingNeeds`` (K15-K17): ``Accepted``; once the answer is committed the react
  hook asks ``chargeledger_propose_charging_schedule`` for a schedule and sends it as a
  TxProfile (``SetChargingProfile``) of the transaction running on the EVSE. With no
  transaction known there, nothing is sent.
* ``NotifyEVChargingSchedule``: ``Accepted`` when the EV's schedule stays within the
  composite limit the CSMS computes for the EVSE (or no limit applies), else ``Rejected``
  (the station then renegotiates with the EV).

The default proposal (``trylast``) is the EV's own maximum (AC: ``evMaxCurrent`` in A; DC:
``evMaxPower`` in W) capped by the station maximum and the external limits on the EVSE
now, one period from the start of the transaction; a site-allocation or tariff plugin
proposes its own by implementing the same hook.
"""

from __future__ import annotations

from typing import Any

import msgspec

from chargeledger.core.plugin import (
    CAP_PURPOSES,
    OCPP16,
    Command,
    EVChargingNeeds,
    InboundCall,
    Recorded,
    Reply,
    SendCall,
    Settings,
    Views,
    answers,
    ev_schedule_within,
    hookimpl,
    plugin_options,
    reacts_to,
)
from chargeledger.core.usecases_smart_charging import ProfilePeriod, charging_profile

__all__ = [
    "chargeledger_answer_call",
    "chargeledger_propose_charging_schedule",
    "chargeledger_react",
    "proposal_profile_id",
]

ACKNOWLEDGED = ("ReportChargingProfiles", "NotifyChargingLimit", "ClearedChargingLimit")


@hookimpl
@answers(*ACKNOWLEDGED)
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]


@hookimpl(specname="chargeledger_answer_call")
@answers("NotifyEVChargingNeeds")
def answer_needs() -> list[Command]:
    return [Reply({"status": "Accepted"})]


@hookimpl(specname="chargeledger_answer_call")
@answers("NotifyEVChargingSchedule")
def answer_ev_schedule(call: InboundCall, views: Views) -> list[Command]:
    request: dict[str, Any] = msgspec.to_builtins(call.payload)
    within = ev_schedule_within(
        views.charging_profiles, call.station, request["evseId"], request, call.at
    )
    return [Reply({"status": "Rejected" if within is False else "Accepted"})]


def proposal_profile_id(position: int) -> int:
    """The id of the TxProfile proposed for the charging needs answered at ``position``
    (derived from the log, so a replay proposes the same)."""
    return position


@hookimpl(trylast=True)
def chargeledger_propose_charging_schedule(
    needs: EVChargingNeeds, views: Views, settings: Settings
) -> dict[str, Any] | None:
    """The EV's maximum capped by the station maximum and external limits now, as one
    period."""
    if needs.max_current is not None and needs.max_power is None:
        unit, limit = "A", needs.max_current
    elif needs.max_power is not None:
        unit, limit = "W", needs.max_power
    else:
        return None
    options = plugin_options(settings, "smart_charging")
    cap = views.charging_profiles.composite(
        needs.station,
        needs.evse_id,
        needs.at,
        1,
        unit,  # type: ignore[arg-type]
        voltage=float(options.get("voltage", 230)),
        phases=int(options.get("phases", 3)),
        purposes=CAP_PURPOSES,  # the proposal replaces the default profiles: only caps count
    ).limit_at(needs.at)
    if cap is not None:
        limit = min(limit, cap)
    return {"unit": unit, "periods": [{"start": 0, "limit": limit}]}


@hookimpl
@reacts_to("NotifyEVChargingNeeds")
def chargeledger_react(
    recorded: Recorded, views: Views, settings: Settings, propose: Any
) -> list[Command]:
    """Once our answer to NotifyEVChargingNeeds is committed: the proposed schedule as a
    relative TxProfile of the transaction running on the EVSE."""
    needs = views.charging_profiles.needs_at(recorded.position)
    if needs is None:
        return []
    running = views.charging_profiles.transaction_on(needs.station, needs.evse_id)
    proposal = propose(needs)
    if running is None or proposal is None:
        return []
    state = views.stations.get(needs.station)
    protocol = state.protocol if state is not None and state.protocol else OCPP16
    periods = [msgspec.convert(p, ProfilePeriod) for p in proposal["periods"]]
    if needs.max_schedule_tuples is not None:
        periods = periods[: needs.max_schedule_tuples]
    profile = charging_profile(
        protocol,
        proposal_profile_id(recorded.position),
        "TxProfile",
        periods,
        unit=proposal["unit"],
        kind="Relative",
        stack_level=int(proposal.get("stack_level", 1)),
        transaction_id=running.transaction_id,
    )
    payload = {"evseId": needs.evse_id, "chargingProfile": profile}
    return [SendCall(needs.station, "SetChargingProfile", payload)]
