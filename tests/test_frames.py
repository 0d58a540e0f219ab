"""The OCPP-J frame codec: round trips, and the exact error for every malformed frame."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chargeledger.core.decide import inbound_call
from chargeledger.core.errors import FrameError, error_code
from chargeledger.core.frames import (
    MAX_DESCRIPTION,
    Call,
    CallErrorFrame,
    CallResult,
    _parse_builtins,
    encode_call,
    encode_error,
    encode_result,
    parse_frame,
    validate_request,
)
from chargeledger.core.simulator.frames import frames_for
from chargeledger.schemas import OCPP16, OCPP201, PROTOCOLS, actions, request_type

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


# -- one decode pass per payload (docs/performance.md) -----------------------------------------
# parse_frame decodes a CALL's payload straight into its request type; _parse_builtins is the
# path by way of builtins it replaced (decode to dicts, then msgspec.convert in decide), still
# taken for anything the one pass refuses so that every refusal is worded as before. Both must
# accept exactly the same texts, give the same payloads, and refuse with the same answers.

# Raw JSON tokens spliced into payloads where values go: numbers a builtins decode refuses (out
# of range) or keeps as big ints, escapes, duplicates' fodder, deep nesting, 2.0.1 customData
# with unknown fields (the one type that skips them).
RAW_TOKENS = [
    "1e999",
    "-1E400",
    "0.1e-999",
    "123456789012345678901234567890",
    "-0",
    "1.0",
    "2.5e1",
    '"\\ud800"',
    '"\\u0041"',
    '"\\u0000x"',
    "[" * 40 + "]" * 40,
    "{}",
    "[]",
    "null",
    "true",
    '"2026-01-01T00:00:00Z"',
    '{"vendorId":"v","x":1e999}',
]
CUSTOM_DATA = [
    '{"vendorId":"v","x":1e999}',
    '{"vendorId":"v","extra":{"a":[1,-1E400]}}',
    '{"vendorId":"v","extra":{"a":[1,2.5]}}',
    '{"vendor\\u0049d":"v","x":1e999}',
    '{"vendorId":"v"}',
]
_SPLICE = "\x00raw{}\x00"


def _request_payloads(protocol: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(action, payload) of ``protocol``: payloads built from the request types (constraints
    not honoured, so many break them), or arbitrary objects for a type hypothesis cannot
    build (2.0.1 DataTransfer's ``data: Any``) and for an unknown action."""
    choices = []
    for action in sorted(actions(protocol)):
        payload_type = request_type(protocol, action)
        assert payload_type is not None
        if action == "DataTransfer" and protocol == OCPP201:
            built = st.fixed_dictionaries(
                {"vendorId": text}, optional={"messageId": text, "data": json_values}
            )
        else:
            built = st.from_type(payload_type).map(msgspec.to_builtins)
        choices.append(st.tuples(st.just(action), built))
    choices.append(st.tuples(st.just("NoSuchAction"), objects))
    return st.one_of(choices)


@st.composite
def _call_texts(draw: st.DrawFn) -> tuple[str, str]:
    """A CALL text of a protocol: a payload from the schemas, mutated (keys dropped, added,
    values replaced, raw tokens spliced in, a key duplicated or spelled with an escape)."""
    protocol = draw(st.sampled_from(PROTOCOLS))
    action, payload = draw(_request_payloads(protocol))
    tokens: list[str] = []

    def mutate(node: Any) -> Any:
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node) or ["customData"]))
            how = draw(st.sampled_from(["drop", "value", "raw", "add", "custom", "deeper"]))
            if how == "drop":
                return {k: v for k, v in node.items() if k != key}
            if how == "value":
                return {**node, key: draw(json_values)}
            if how == "raw":
                tokens.append(draw(st.sampled_from(RAW_TOKENS)))
                return {**node, key: _SPLICE.format(len(tokens) - 1)}
            if how == "custom":  # 2.0.1 takes customData, with any other fields, everywhere
                tokens.append(draw(st.sampled_from(CUSTOM_DATA)))
                return {**node, "customData": _SPLICE.format(len(tokens) - 1)}
            if how == "add":
                name = draw(st.sampled_from(["customData", "extra", key.upper()]) | text)
                return {**node, name: draw(json_values)}
            if how == "deeper" and key in node:
                return {**node, key: mutate(node[key])}
        if isinstance(node, list) and node:
            index = draw(st.integers(0, len(node) - 1))
            return [*node[:index], mutate(node[index]), *node[index + 1 :]]
        return node

    for _ in range(draw(st.integers(0, 3))):
        payload = mutate(payload)
    body = msgspec.json.encode(payload).decode()
    for number, token in enumerate(tokens):
        body = body.replace(json.dumps(_SPLICE.format(number)), token)
    if body != "{}" and draw(st.booleans()):  # a key given twice: the last one counts
        first = body[1:].split(",")[0].split("}")[0]
        body = "{" + first + "," + body[1:] if ":" in first else body
    if draw(st.booleans()):  # a letter of the text spelled as a \u escape
        letters = [i for i, c in enumerate(body) if c.isascii() and c.isalpha()]
        if letters:
            i = draw(st.sampled_from(letters))
            body = body[:i] + f"\\u{ord(body[i]):04x}" + body[i + 1 :]
    message_id = draw(st.sampled_from(["m1", "", "x" * 36, "x" * 37]) | message_ids)
    head = draw(st.sampled_from(["2", "2", "2", "2.0", "3", " 2"]))
    return protocol, f"[{head},{json.dumps(message_id)},{json.dumps(action)},{body}]"


def _answer(frame_of: Any, text_: str, protocol: str) -> tuple[Any, ...]:
    """What the gateway makes of ``text_``: the frame error, or the CALL and its typed
    request (or the payload error decide answers), or another frame."""
    try:
        frame = frame_of(text_, protocol)
    except FrameError as exc:
        return ("malformed", exc.message_id, exc.code, exc.description)
    if not isinstance(frame, Call):
        return ("frame", frame)
    try:
        request = inbound_call(frame, station="CP", session="s", protocol=protocol, at=0.0)
    except FrameError as exc:
        return ("invalid", frame, exc.message_id, exc.code, exc.description)
    return ("call", frame, frame.payload, request.payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_call_texts())
def test_one_pass_and_builtins_agree_on_every_call(case: tuple[str, str]) -> None:
    protocol, frame_text = case
    one_pass = _answer(parse_frame, frame_text, protocol)
    builtins = _answer(lambda t, _p: _parse_builtins(t), frame_text, protocol)
    assert one_pass == builtins
    event(f"{protocol} {one_pass[0]}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_valid_calls_are_decoded_in_one_pass(protocol: str) -> None:
    # Not vacuous: the simulator's whole session takes the one pass (request set), and its
    # builtins, decoded from the payload's text on demand, are those of the builtins path.
    station = frames_for(protocol, "TAG", random.Random(0))
    station.check_answer("start_transaction", {"transactionId": 1})
    kinds = ["boot", "heartbeat", "authorize", "start_transaction", "meter_values"]
    texts = [getattr(station, kind)(b"1")[1].decode() for kind in kinds]
    for frame_text in texts:
        frame = parse_frame(frame_text, protocol)
        assert isinstance(frame, Call) and frame.protocol == protocol
        assert frame.request is not None
        assert frame.request == validate_request(protocol, frame.action, frame.payload)
        assert frame == _parse_builtins(frame_text)
