"""Tests that kill the mutants of core/decide.py the rest of the suite let survive
(``make mutation``; the list and the equivalent mutants are in docs/testing.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chargeledger.core.commands import Reply
from chargeledger.core.decide import Decision, answer_wire, decide, reply_text
from chargeledger.core.errors import FrameError
from chargeledger.core.frames import Call
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.projections import Views
from chargeledger.schemas import OCPP16, OCPP201

HEARTBEAT = Call("hb-1", "Heartbeat", {})
# Heartbeat.conf requires currentTime: this answer violates the schema.
BROKEN_ANSWER = Reply({"currentTime": 5})


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_an_answer_that_violates_the_schema_is_withheld(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    wire = answer_wire(protocol, HEARTBEAT, BROKEN_ANSWER)
    assert isinstance(wire, FrameError)
    assert (wire.message_id, wire.code) == ("hb-1", "InternalError")
    assert "refusing to send an invalid Heartbeat answer" in caplog.text
    sent = json.loads(reply_text(protocol, HEARTBEAT, BROKEN_ANSWER))
    assert sent[:3] == [4, "hb-1", "InternalError"]
    assert "5" not in sent[3] and sent[4] == {}


def _decision() -> Decision:
    return decide(
        PluginHost(Settings(), plugins={}),
        Views(),
        HEARTBEAT,
        station="CP1",
        session="s1",
        protocol=OCPP16,
        at=0.0,
    )


def test_decisions_are_immutable() -> None:
    decision = _decision()
    assert decision.answer.code == "NotSupported"  # type: ignore[union-attr]
    with pytest.raises(AttributeError):
        decision.note = "changed"  # type: ignore[misc]


def test_decide_takes_the_station_context_by_keyword_only() -> None:
    # Four strings and a float in a row: positional, station and session could be swapped.
    args: list[Any] = [PluginHost(Settings(), plugins={}), Views(), HEARTBEAT]
    with pytest.raises(TypeError):
        decide(*args, "CP1", "s1", OCPP16, 0.0)  # type: ignore[misc]
