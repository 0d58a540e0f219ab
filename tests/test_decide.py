"""The inbound decision path the gateway and the what-if replay share (core/decide.py)."""

from __future__ import annotations

from typing import Any

import pytest

from chargeledger.core.audit.replay import WhatIf
from chargeledger.core.decide import (
    ENTRY_OVERHEAD,
    Answered,
    Decision,
    Retransmission,
    RetransmissionMemory,
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
    assert window.classify(HEARTBEAT, heartbeat, "s") is Retransmission.NEW
    window.remember("h", HEARTBEAT, '[3,"h",{}]', "s")
    assert window.classify(HEARTBEAT, heartbeat, "s") is Retransmission.VERBATIM
    spaced = '[2, "h", "Heartbeat", {}]'  # the same CALL written differently
    assert window.classify(spaced, _call(spaced), "s") is Retransmission.VERBATIM
    other = '[2,"h","Authorize",{"idTag":"T"}]'
    assert window.classify(other, _call(other), "s") is Retransmission.ID_REUSED
    window.remember("a", other, "x", "s")
    window.remember("b", BOOT, "y", "s")
    assert len(window) == 2
    assert window.classify(HEARTBEAT, heartbeat, "s") is Retransmission.NEW, "the oldest is gone"


def test_retransmissions_are_answered_without_the_plugins() -> None:
    counting = Counting()
    plugins = PluginHost(Settings(), plugins={"counting": counting})
    window = Answered()
    first, text = _decide(window, plugins, HEARTBEAT)
    assert first.retransmission is Retransmission.NEW and first.note is None
    window.remember("h", HEARTBEAT, text, "s")

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
    window.remember("h", HEARTBEAT, '[3,"h",{}]', "s")
    window.remember("b", BOOT, '[3,"b",{}]', "s")
    decision, _ = _decide(window, plugins, BOOT)
    assert decision.retransmission is Retransmission.VERBATIM, "a repeated boot is a repeat"
    assert len(window) == 2
    fresh_boot = BOOT.replace('"b"', '"b2"')
    decision, _ = _decide(window, plugins, fresh_boot)
    assert decision.retransmission is Retransmission.NEW
    assert len(window) == 0, "a reboot restarts the station's message ids"
    assert counting.asked == ["b2"]


def test_message_ids_are_unique_per_connection_only() -> None:
    """Under an id answered on an earlier connection, the same CALL is a retransmission (a
    StartTransaction retried after a reconnect) and a different one is new; on the same
    connection a different one is a protocol error."""
    window = Answered()
    start = '[2,"1","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0}]'
    status = '[2,"1","StatusNotification",{"connectorId":1,"status":"Available"}]'
    window.remember("1", start, '[3,"1",{"transactionId":7}]', "old")
    assert window.classify(start, _call(start), "new") is Retransmission.VERBATIM
    assert window.reply("1") == '[3,"1",{"transactionId":7}]'
    assert window.classify(status, _call(status), "new") is Retransmission.NEW
    assert window.classify(status, _call(status), "old") is Retransmission.ID_REUSED
    window.remember("1", status, '[3,"1",{}]', "new")
    assert len(window) == 1, "the new CALL replaced the old one under its id"
    assert window.classify(start, _call(start), "new") is Retransmission.ID_REUSED
    # An empty payload tells nothing: after a reconnect it is a new CALL (no stale time).
    window.remember("h", HEARTBEAT, '[3,"h",{"currentTime":"then"}]', "new")
    assert window.classify(HEARTBEAT, _call(HEARTBEAT), "new") is Retransmission.VERBATIM
    assert window.classify(HEARTBEAT, _call(HEARTBEAT), "newer") is Retransmission.NEW


def test_the_window_is_bounded_in_bytes() -> None:
    window = Answered(size=100, max_bytes=3 * (len(HEARTBEAT) + 10 + ENTRY_OVERHEAD))
    for n in range(10):
        window.remember(str(n), HEARTBEAT, "x" * 10, "s")
        assert window.bytes <= window.max_bytes  # type: ignore[operator]
    assert len(window) == 3, "the oldest went first"
    window.remember("big", "y" * 10_000, "z", "s")
    assert (len(window), window.bytes) == (0, 0), "a CALL costing more than the bound is not kept"


def test_the_memory_is_bounded_in_total_and_drops_least_recently_used_stations() -> None:
    cost = len(HEARTBEAT) + 2 + ENTRY_OVERHEAD
    memory = RetransmissionMemory(calls=4, station_bytes=4 * cost, total_bytes=10 * cost)
    for n in range(2_000):  # thousands of made-up stations, four CALLs each
        window = memory.window(f"CP{n}")
        for m in range(6):
            window.remember(str(m), HEARTBEAT, "{}", "s")
        assert memory.bytes <= memory.total_bytes
    # Two full windows fit; a third, filling up, pushed out the least recently used one.
    assert (len(memory), memory.entries(), memory.bytes) == (2, 8, 8 * cost)
    assert memory.dropped == 1_998
    assert len(memory.window("CP1999")) == 4, "the station in use keeps its window"


def test_the_windows_of_stations_gone_for_a_while_are_released() -> None:
    memory = RetransmissionMemory(calls=4, station_bytes=10_000, total_bytes=100_000)
    for station in ("GONE", "BACK", "HERE"):
        memory.window(station).remember("1", HEARTBEAT, "{}", "s")
    memory.left("GONE", 100.0)
    memory.left("BACK", 100.0)
    memory.returned("BACK")
    assert memory.release_idle(150.0, 60.0) == 0, "not gone long enough"
    assert memory.release_idle(160.0, 60.0) == 1
    assert len(memory) == 2 and memory.bytes == 2 * memory.window("HERE").bytes


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
