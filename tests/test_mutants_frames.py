"""Tests that kill the mutants of core/frames.py the rest of the suite let survive
(``make mutation``; the list and the equivalent mutants are in docs/testing.md)."""

from __future__ import annotations

import json

import pytest

from chargeledger.core.errors import FrameError
from chargeledger.core.frames import (
    Call,
    CallErrorFrame,
    CallResult,
    encode_error,
    parse_frame,
    validate_request,
    validate_response,
)
from chargeledger.schemas import OCPP16, OCPP201

FRAMES = [
    '[2,"1","Heartbeat",{}]',
    '[3,"1",{"currentTime":"2026-01-01T00:00:00Z"}]',
    '[4,"1","GenericError","oops",{}]',
]


@pytest.mark.parametrize("text", FRAMES)
def test_parsed_frames_are_immutable(text: str) -> None:
    # The frame log and the retransmission check compare frames by value: one changed after
    # parsing would no longer be the frame that was recorded.
    frame = parse_frame(text, OCPP16)
    assert isinstance(frame, Call | CallResult | CallErrorFrame)
    with pytest.raises(AttributeError):
        frame.message_id = "2"  # type: ignore[misc]


@pytest.mark.parametrize("protocol", [OCPP16, OCPP201])
def test_error_description_is_cut_at_the_255_characters_of_ocpp_201(protocol: str) -> None:
    text = encode_error("1", "GenericError", "x" * 300)
    frame = parse_frame(text, protocol)
    assert isinstance(frame, CallErrorFrame)
    assert frame.description == "x" * 255
    assert json.loads(encode_error("1", "GenericError", "y" * 255))[3] == "y" * 255


@pytest.mark.parametrize("description", [5, None, ["oops"], {"a": 1}])
def test_callerror_description_must_be_a_string(description: object) -> None:
    text = json.dumps([4, "1", "GenericError", description, {}])
    with pytest.raises(FrameError) as raised:
        parse_frame(text, OCPP201)
    assert (raised.value.message_id, raised.value.code) == ("1", "FormatViolation")


@pytest.mark.parametrize("validate", [validate_request, validate_response])
def test_message_id_is_keyword_only(validate: object) -> None:
    # Positional, a message id would sit where callers could swap it with the payload.
    with pytest.raises(TypeError):
        validate(OCPP16, "Heartbeat", {}, "id")  # type: ignore[operator]
