"""Firmware (1.6 Firmware Management and its security extension, 2.0.1 L): the answers to the
stations' firmware status notifications, and the firmware campaigns' rollout.

The 1.6 FirmwareStatusNotification and SignedFirmwareStatusNotification and the 2.0.1
FirmwareStatusNotification and PublishFirmwareStatusNotification are acknowledged; the
firmware projection folds them (``views.firmware``).

A campaign is driven by rollout steps, each a recorded timer (``campaign_timer``): the first
is due when the ``CampaignCreated`` is recorded, each next one ``interval`` seconds after the
one before, as long as the campaign runs (a paused campaign takes no step; resumed, its next
step is due at once). At each step the block updates the campaign's next
pending stations that are connected, as many as leave at most ``max_in_flight`` updating,
each with a ``SendCall`` of the station's version of the ``update_firmware`` use case named
``campaign_request_id`` (so the ``CommandRequested`` the one door records is the decision,
and the projection folds it). Everything a step decides is read from the views as of its
recorded timer, and the ``requestId`` is the timer's log position: a replay of the log
through this block decides the same updates at the same steps.
"""

from __future__ import annotations

from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.events import CampaignCreated, CampaignResumed
from chargeledger.core.plugin import (
    Command,
    Recorded,
    Reply,
    SendCall,
    StartTimer,
    TimerFired,
    Views,
    answers,
    hookimpl,
    reacts_to,
    rfc3339,
)
from chargeledger.core.usecases_firmware import UpdateFirmwareArgs, update_firmware
from chargeledger.projections.firmware import (
    CampaignState,
    campaign_request_id,
    campaign_timer,
    read_campaign_timer,
)

__all__ = ["campaign_step", "chargeledger_answer_call", "chargeledger_react"]


@hookimpl
@answers(
    "FirmwareStatusNotification",
    "SignedFirmwareStatusNotification",
    "PublishFirmwareStatusNotification",
)
def chargeledger_answer_call() -> list[Command]:
    return [Reply({})]


@hookimpl
@reacts_to(CampaignCreated, CampaignResumed, TimerFired)
def chargeledger_react(recorded: Recorded, views: Views) -> list[Command]:
    """The first rollout step of a new campaign, the next one of a resumed campaign; the
    updates and the next step at each step."""
    event = recorded.event
    if isinstance(event, CampaignCreated):
        return [StartTimer(campaign_timer(event.campaign_id, 0), event.at)]
    if isinstance(event, CampaignResumed):
        resumed = views.firmware.campaign(event.campaign_id)
        if resumed is None or resumed.status != "running":
            return []
        # The step after the last one fired, due now: it re-arms that step's timer when it
        # is still pending, so a campaign never runs two chains of steps.
        return [StartTimer(campaign_timer(event.campaign_id, resumed.steps), event.at)]
    if not isinstance(event, TimerFired):
        return []
    named = read_campaign_timer(event.name)
    campaign = None if named is None else views.firmware.campaign(named[0])
    if campaign is None or named is None:
        return []
    return campaign_step(campaign, views, named[1], event.due, recorded.position)


def campaign_step(
    campaign: CampaignState, views: Views, step: int, due: float, position: int
) -> list[Command]:
    """What rollout step ``step`` of ``campaign`` (its timer due at ``due``, recorded fired
    at ``position``) decides: the updates to send now and the next step, nothing once the
    campaign no longer runs."""
    if campaign.status != "running":
        return []
    created = campaign.created
    room = created.max_in_flight - len(campaign.with_status("in_progress"))
    commands: list[Command] = []
    for station in campaign.with_status("pending"):
        if room <= 0:
            break
        state = views.stations.get(station)
        if state is None or not state.connected:
            continue  # tried again at the next step
        args = UpdateFirmwareArgs(
            location=created.location,
            retrieve_date=created.retrieve_date or rfc3339(due),
            retries=created.retries,
            retry_interval=created.retry_interval,
            install_date=created.install_date,
            signing_certificate=created.signing_certificate,
            signature=created.signature,
        )
        try:
            request = update_firmware(state.protocol, args, position)
        except (InvalidUseCaseArguments, UnsupportedUseCase):
            continue  # its version cannot say this update (it reconnected in another one)
        request_id = campaign_request_id(created.campaign_id, station)
        commands.append(SendCall(station, request.action, request.payload, request_id))
        room -= 1
    next_step = campaign_timer(created.campaign_id, step + 1)
    return [*commands, StartTimer(next_step, due + created.interval)]
