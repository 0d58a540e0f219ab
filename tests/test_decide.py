"""The inbound decision path the gateway and the what-if replay share (core/decide.py)."""

from __future__ import annotations

from typing import Any

import pytest

from chargeledger.core.audit.replay import WhatIf
from chargeledger.core.decide import (
    Answered,
    Decision,
    Retransmission,
    decide_call,
    reply_text,
)
from chargeledger.core.events import FrameLogged, Recorded, SessionOpened
from chargeledger.core.frames import Call, parse_frame
from chargeledger.core.plugin import Command, InboundCall, Reply, hookimpl
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.projections import Views
from chargeledger.schemas import OCPP16

BOOT = '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
HEARTBEAT = '[2,"h","Heartbeat",{}]'


class Counting:
    """A plugin answering every CALL ``{}`` and counting what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    @hookimpl
    def chargeledger_answer_call(self, call: InboundCall) -> list[Command]:
        self.asked.append(call.message_id)
        return [Reply({"status": "Accepted", "currentTime": "x", "interval": 1})]


def _call(text: str) -> Call:
    frame = parse_frame(text, OCPP16)
    assert isinstance(frame, Call)
    return frame


def _decide(answered: Answered, plugins: PluginHost, text: str) -> tuple[Decision, str]:
    frame = _call(text)
    decision = decide_call(
        answered, plugins, Views(), frame, text, station="CP", session="s", protocol=OCPP16, at=0.0
    )
    return decision, reply_text(OCPP16, frame, decision.answer)


def test_the_notes_on_the_wire_are_the_enum_values() -> None:
    # Stored logs hold these strings: they must never change.
    assert Retransmission.VERBATIM.value == "retransmission"
    assert Retransmission.ID_REUSED.value == "id-reused"


def test_the_window_classifies_and_forgets_the_oldest() -> None:
    window = Answered(size=2)
    heartbeat = _call(HEARTBEAT)
    assert window.classify(HEARTBEAT, heartbeat) is Retransmission.NEW
    window.remember("h", HEARTBEAT, '[3,"h",{}]')
    assert window.classify(HEARTBEAT, heartbeat) is Retransmission.VERBATIM
    spaced = '[2, "h", "Heartbeat", {}]'  # the same CALL written differently
    assert window.classify(spaced, _call(spaced)) is Retransmission.VERBATIM
    other = '[2,"h","Authorize",{"idTag":"T"}]'
    assert window.classify(other, _call(other)) is Retransmission.ID_REUSED
    window.remember("a", other, "x")
    window.remember("b", BOOT, "y")
    assert len(window) == 2
    assert window.classify(HEARTBEAT, heartbeat) is Retransmission.NEW, "the oldest is gone"


def test_retransmissions_are_answered_without_the_plugins() -> None:
    counting = Counting()
    plugins = PluginHost(Settings(), plugins={"counting": counting})
    window = Answered()
    first, text = _decide(window, plugins, HEARTBEAT)
    assert first.retransmission is Retransmission.NEW and first.note is None
    window.remember("h", HEARTBEAT, text)

    again, again_text = _decide(window, plugins, HEARTBEAT)
    assert (again.retransmission, again.note, again_text) == (
        Retransmission.VERBATIM,
        "retransmission",
        text,
    )
    reused, reused_text = _decide(window, plugins, '[2,"h","Authorize",{"idTag":"T"}]')
    assert (reused.retransmission, reused.note) == (Retransmission.ID_REUSED, "id-reused")
    assert reused_text == '[4,"h","ProtocolError","message id reused by a different CALL",{}]'
    assert counting.asked == ["h"], "only the new CALL reached the plugins"


def test_a_boot_empties_the_window_before_it_is_decided() -> None:
    counting = Counting()
    plugins = PluginHost(Settings(), plugins={"counting": counting})
    window = Answered()
    window.remember("h", HEARTBEAT, '[3,"h",{}]')
    window.remember("b", BOOT, '[3,"b",{}]')
    decision, _ = _decide(window, plugins, BOOT)
    assert decision.retransmission is Retransmission.VERBATIM, "a repeated boot is a repeat"
    assert len(window) == 2
    fresh_boot = BOOT.replace('"b"', '"b2"')
    decision, _ = _decide(window, plugins, fresh_boot)
    assert decision.retransmission is Retransmission.NEW
    assert len(window) == 0, "a reboot restarts the station's message ids"
    assert counting.asked == ["b2"]


def _log(*frames: tuple[str, str, str | None]) -> list[Recorded]:
    records = [
        Recorded(1, "s", 1, SessionOpened(station="CP", session="s", at=0.0, protocol=OCPP16))
    ]
    for position, (direction, text, note) in enumerate(frames, start=2):
        event = FrameLogged(
            station="CP",
            session="s",
            at=float(position),
            direction="in" if direction == "in" else "out",
            text=text,
            note=note,
        )
        records.append(Recorded(position, "s", position, event))
    return records


@pytest.mark.parametrize("noted", [True, False])
def test_what_if_takes_the_gateway_path(noted: bool) -> None:
    """The replay decides retransmissions as the gateway does, whether or not the log notes
    them (a log imported from another CSMS has no notes)."""
    heartbeat_answer = '[3,"h",{"currentTime":"1970-01-01T00:00:04.000Z"}]'
    reused = '[2,"h","Authorize",{"idTag":"T"}]'

    def note(value: str) -> Any:
        return value if noted else None

    log = _log(
        ("in", BOOT, None),
        (
            "out",
            '[3,"b",{"status":"Accepted","currentTime":"1970-01-01T00:00:02.000Z","interval":300}]',
            None,
        ),
        ("in", HEARTBEAT, None),
        ("out", heartbeat_answer, None),
        ("in", HEARTBEAT, note("retransmission")),
        ("out", heartbeat_answer, note("retransmission")),
        ("in", reused, note("id-reused")),
        (
            "out",
            '[4,"h","ProtocolError","message id reused by a different CALL",{}]',
            note("id-reused"),
        ),
    )
    what_if = WhatIf(PluginHost(Settings()))
    for recorded in log:
        what_if.feed(recorded)
    assert what_if.differences == []
    assert (what_if.decided, what_if.cached) == (3, 1)


def test_what_if_reports_an_answered_reused_message_id() -> None:
    """Another CSMS answered a reused message id; today's gateway refuses it."""
    log = _log(
        ("in", BOOT, None),
        (
            "out",
            '[3,"b",{"status":"Accepted","currentTime":"1970-01-01T00:00:02.000Z","interval":300}]',
            None,
        ),
        ("in", HEARTBEAT, None),
        ("out", '[3,"h",{"currentTime":"1970-01-01T00:00:04.000Z"}]', None),
        ("in", '[2,"h","Authorize",{"idTag":"T"}]', None),
        ("out", '[3,"h",{"idTagInfo":{"status":"Accepted"}}]', None),
    )
    what_if = WhatIf(PluginHost(Settings()))
    for recorded in log:
        what_if.feed(recorded)
    [difference] = what_if.differences
    assert difference.action == "Authorize"
    assert difference.detail.startswith("recorded a CALLRESULT; today CALLERROR ProtocolError")
