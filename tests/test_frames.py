"""The OCPP-J frame codec: round trips, and the exact error for every malformed frame."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeledger.core.errors import FrameError, error_code
from chargeledger.core.frames import (
    MAX_DESCRIPTION,
    Call,
    CallErrorFrame,
    CallResult,
    encode_call,
    encode_error,
    encode_result,
    parse_frame,
)
from chargeledger.schemas import OCPP16, OCPP201, PROTOCOLS

# Text that survives UTF-8 (a WebSocket text frame cannot carry a lone surrogate).
text = st.text(st.characters(codec="utf-8"))
message_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=36)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(text, json_values, max_size=5)
frames = st.one_of(
    st.builds(Call, message_ids, text, objects),
    st.builds(CallResult, message_ids, objects),
    st.builds(CallErrorFrame, message_ids, text, st.text(max_size=MAX_DESCRIPTION), objects),
)


def _encode(frame: Call | CallResult | CallErrorFrame) -> str:
    if isinstance(frame, Call):
        return encode_call(frame.message_id, frame.action, frame.payload)
    if isinstance(frame, CallResult):
        return encode_result(frame.message_id, frame.payload)
    return encode_error(frame.message_id, frame.code, frame.description, frame.details)


@given(frames, st.sampled_from(PROTOCOLS))
def test_any_frame_round_trips(frame: Call | CallResult | CallErrorFrame, protocol: str) -> None:
    assert parse_frame(_encode(frame), protocol) == frame


@given(text, st.sampled_from(PROTOCOLS))
def test_arbitrary_text_raises_only_frame_errors(data: str, protocol: str) -> None:
    try:
        parse_frame(data, protocol)
    except FrameError as exc:
        assert isinstance(exc.message_id, str)
        assert error_code(protocol, exc.code)


@given(
    st.one_of(
        json_values,
        # Frame-like arrays reach the deeper checks more often than arbitrary JSON.
        st.tuples(st.integers(0, 7) | json_values, st.text(max_size=40) | json_values).flatmap(
            lambda head: st.lists(json_values, max_size=4).map(lambda tail: [*head, *tail])
        ),
    ),
    st.sampled_from(PROTOCOLS),
)
def test_arbitrary_json_raises_only_frame_errors(value: Any, protocol: str) -> None:
    try:
        frame = parse_frame(json.dumps(value), protocol)
    except FrameError as exc:
        assert error_code(protocol, exc.code)
    else:
        assert isinstance(frame, Call | CallResult | CallErrorFrame)


def test_encoding_is_compact() -> None:
    assert encode_call("1", "Heartbeat", {}) == '[2,"1","Heartbeat",{}]'
    assert encode_result("1", {"currentTime": "2024-01-01T00:00:00Z"}) == (
        '[3,"1",{"currentTime":"2024-01-01T00:00:00Z"}]'
    )
    assert encode_error("1", "NotSupported") == '[4,"1","NotSupported","",{}]'


def test_error_descriptions_are_cut_to_the_201_limit() -> None:
    frame = parse_frame(encode_error("1", "GenericError", "x" * 1000), OCPP201)
    assert isinstance(frame, CallErrorFrame) and len(frame.description) == MAX_DESCRIPTION


LONG_ID = "x" * 37
# (frame text, message id of the error, 1.6 code, 2.0.1 code)
MALFORMED = [
    ("this is not json", "-1", "FormationViolation", "RpcFrameworkError"),
    ("", "-1", "FormationViolation", "RpcFrameworkError"),
    ('[2,"m1","Heartbeat",{]', "m1", "FormationViolation", "FormatViolation"),
    ('{"a":1}', "-1", "FormationViolation", "RpcFrameworkError"),
    ('"[2,\\"m1\\"]"', "-1", "FormationViolation", "RpcFrameworkError"),
    ("[]", "-1", "FormationViolation", "RpcFrameworkError"),
    ("[2]", "-1", "FormationViolation", "RpcFrameworkError"),
    ('[2,17,"Heartbeat",{}]', "-1", "FormationViolation", "RpcFrameworkError"),
    ("[" * 5000 + "]" * 5000, "-1", "FormationViolation", "RpcFrameworkError"),
    ('[2,"","Heartbeat",{}]', "", "FormationViolation", "RpcFrameworkError"),
    (f'[2,"{LONG_ID}","Heartbeat",{{}}]', LONG_ID, "FormationViolation", "RpcFrameworkError"),
    ('["2","m1","Heartbeat",{}]', "m1", "FormationViolation", "FormatViolation"),
    ('[2.0,"m1","Heartbeat",{}]', "m1", "FormationViolation", "FormatViolation"),
    ('[true,"m1","Heartbeat",{}]', "m1", "FormationViolation", "FormatViolation"),
    ('[2,"m1","Heartbeat"]', "m1", "FormationViolation", "FormatViolation"),
    ('[2,"m1","Heartbeat",{},{}]', "m1", "FormationViolation", "FormatViolation"),
    ('[2,"m1",7,{}]', "m1", "FormationViolation", "FormatViolation"),
    ('[2,"m1","Heartbeat",[]]', "m1", "FormationViolation", "FormatViolation"),
    ('[2,"m1","Heartbeat",null]', "m1", "FormationViolation", "FormatViolation"),
    ('[3,"m1"]', "m1", "FormationViolation", "FormatViolation"),
    ('[3,"m1","ok"]', "m1", "FormationViolation", "FormatViolation"),
    ('[4,"m1","GenericError","oops"]', "m1", "FormationViolation", "FormatViolation"),
    ('[4,"m1","GenericError","oops","details"]', "m1", "FormationViolation", "FormatViolation"),
    ('[4,"m1",500,"oops",{}]', "m1", "FormationViolation", "FormatViolation"),
    ('[5,"m1","GenericError","oops",{}]', "m1", "ProtocolError", "MessageTypeNotSupported"),
    ('[6,"m1","NotifyPeriodicEventStream",{}]', "m1", "ProtocolError", "MessageTypeNotSupported"),
    ('[9,"m1","Heartbeat",{}]', "m1", "ProtocolError", "MessageTypeNotSupported"),
]


@pytest.mark.parametrize(("frame", "message_id", "code16", "code201"), MALFORMED)
def test_malformed_frames_get_the_version_code(
    frame: str, message_id: str, code16: str, code201: str
) -> None:
    for protocol, expected in ((OCPP16, code16), (OCPP201, code201)):
        with pytest.raises(FrameError) as caught:
            parse_frame(frame, protocol)
        assert caught.value.message_id == message_id
        assert error_code(protocol, caught.value.code) == expected, protocol


def test_a_lone_surrogate_is_not_json() -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame('[2,"m1","Heartbeat",{"a":"\ud800"}]', OCPP201)
    assert caught.value.code == "FormatViolation" and caught.value.message_id == "m1"


def test_well_formed_frames_parse() -> None:
    assert parse_frame(' [2, "m1", "Heartbeat", {}] ', OCPP16) == Call("m1", "Heartbeat", {})
    assert parse_frame('[3,"m1",{"a":[1]}]', OCPP16) == CallResult("m1", {"a": [1]})
    assert parse_frame('[4,"m1","NotSupported","",{}]', OCPP201) == CallErrorFrame(
        "m1", "NotSupported", "", {}
    )
    assert parse_frame(f'[3,"{"x" * 36}",{{}}]', OCPP201) == CallResult("x" * 36, {})


def test_unknown_protocol_is_our_bug_not_a_frame_error() -> None:
    with pytest.raises(ValueError, match=r"ocpp2\.1"):
        parse_frame('[2,"m1","Heartbeat",{}]', "ocpp2.1")
