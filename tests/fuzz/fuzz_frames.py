"""Fuzz target: OCPP-J frame parsing and per-action payload validation, both versions.

Run by ``make fuzz`` (``python -m tests.fuzz.fuzz_frames -runs=N CORPUS_DIR``; any libFuzzer
flag works). Coverage-guided by atheris over ``chargeledger.core.frames`` and
``chargeledger.core.errors``. Every input becomes a frame text for :func:`parse_frame`; a
parsed CALL's payload is then validated as its action's request and as its response. The first
input byte picks the protocol and how the rest makes the text:

* text: the rest, decoded as UTF-8 with lone surrogates let through, is the frame;
* payload: the second byte picks an action of the protocol, the rest is its payload text;
* mutated: a valid payload of the simulator's session (for its own action or, chosen by the
  input, another one) with fields removed, added or replaced by values of any JSON type or
  by the schemas' own names. Coverage cannot see inside msgspec's C validator, so this
  grammar is what gets inputs past the first "unknown field" to every deeper check.

A crash is any exception other than ``FrameError`` (whose code must be a documented one that
the protocol can spell, carrying the frame's message id), a parsed frame that does not
survive encoding and parsing again, or a payload that passes inbound validation but that
``to_wire`` refuses to send back.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import atheris
import msgspec
import msgspec.inspect

with atheris.instrument_imports(include=["chargeledger.core.frames", "chargeledger.core.errors"]):
    from chargeledger.core.errors import FrameError, error_code
    from chargeledger.core.frames import (
        Call,
        CallErrorFrame,
        CallResult,
        Frame,
        _parse_builtins,
        encode_call,
        encode_error,
        encode_result,
        parse_frame,
        to_wire,
        validate_request,
        validate_response,
    )
from chargeledger.core.simulator.frames import frames_for
from chargeledger.schemas import PROTOCOLS, actions, request_type, response_type

FRAME_CODES = {"RpcFrameworkError", "FormatViolation", "MessageTypeNotSupported"}
PAYLOAD_CODES = {
    "NotImplemented",
    "OccurrenceConstraintViolation",
    "TypeConstraintViolation",
    "PropertyConstraintViolation",
    "FormatViolation",
}
ACTIONS = {protocol: sorted(actions(protocol)) for protocol in PROTOCOLS}
REPORT_EVERY = 100_000
"""Inputs between two tallies of the outcomes on stderr."""
OUTCOMES: Counter[str] = Counter()
MODE_TEXT, MODE_PAYLOAD, MODE_MUTATED = 0, 1, 2
SESSION = (
    "boot",
    "heartbeat",
    "authorize",
    "start_transaction",
    "meter_values",
    "stop_transaction",
)
ODD_FRAMES = [
    '[3,"1",{"currentTime":"2026-01-01T00:00:00Z"}]',
    '[4,"1","GenericError","oops",{}]',
    '[2,"abc",broken',
    '[5,"x",{}]',
]


def session_calls(protocol: str) -> list[tuple[str, dict[str, Any]]]:
    """The (action, payload) of every CALL of a simulated station's charging session."""
    station = frames_for(protocol, "TAG", random.Random(0))
    station.check_answer("start_transaction", {"transactionId": 1})
    texts = [getattr(station, kind)(b"1")[1] for kind in SESSION]
    texts.append(station.status_notification(b"1", "Available")[1])
    return [(frame[2], frame[3]) for frame in map(msgspec.json.decode, texts)]


CALLS = {protocol: session_calls(protocol) for protocol in PROTOCOLS}


def seeds() -> list[bytes]:
    """The session's CALLs in both versions in every mode, and a few frames not CALLs."""
    found: list[bytes] = []
    for protocol in PROTOCOLS:
        head = PROTOCOLS.index(protocol)
        for number, (action, payload) in enumerate(CALLS[protocol]):
            found.append(
                bytes([head | MODE_TEXT << 1]) + encode_call("1", action, payload).encode()
            )
            found.append(
                bytes([head | MODE_PAYLOAD << 1, ACTIONS[protocol].index(action)])
                + msgspec.json.encode(payload)
            )
            found.append(bytes([head | MODE_MUTATED << 1, number, 0, 0]))
        found.extend(bytes([head | MODE_TEXT << 1]) + text.encode() for text in ODD_FRAMES)
    return found


def schema_tokens() -> set[str]:
    """Every field name and enum value of every payload type, for a libFuzzer dictionary:
    without them random mutation rarely gets past "unknown field" to the deeper checks."""
    tokens: set[str] = set()
    types = [
        lookup(protocol, action)
        for protocol in PROTOCOLS
        for action in ACTIONS[protocol]
        for lookup in (request_type, response_type)
    ]
    pending = list(msgspec.inspect.multi_type_info([t for t in types if t is not None]))
    seen: set[int] = set()
    while pending:
        info = pending.pop()
        if id(info) in seen:
            continue
        seen.add(id(info))
        if isinstance(info, msgspec.inspect.StructType):
            tokens.update(field.encode_name for field in info.fields)
            pending.extend(field.type for field in info.fields)
        elif isinstance(info, msgspec.inspect.LiteralType):
            tokens.update(value for value in info.values if isinstance(value, str))
        elif isinstance(info, msgspec.inspect.UnionType):
            pending.extend(info.types)
        elif isinstance(info, msgspec.inspect.ListType):
            pending.append(info.item_type)
    return tokens


def check_error(exc: FrameError, protocol: str, codes: set[str]) -> None:
    """A FrameError must carry a documented code, spellable for ``protocol``, and an id (the
    frame's own, even when empty or too long: echoing it is how the station matches it)."""
    if exc.code not in codes:
        raise AssertionError(f"undocumented code {exc.code!r}: {exc}")
    error_code(protocol, exc.code)
    if not isinstance(exc.message_id, str):
        raise AssertionError(f"FrameError without a message id: {exc!r}")


def reencoded(frame: Frame) -> str:
    """The frame as we would write it."""
    if isinstance(frame, Call):
        return encode_call(frame.message_id, frame.action, frame.payload)
    if isinstance(frame, CallResult):
        return encode_result(frame.message_id, frame.payload)
    assert isinstance(frame, CallErrorFrame)
    return encode_error(frame.message_id, frame.code, frame.description, frame.details)


def check_payload(protocol: str, action: str, payload: dict[str, Any], message_id: str) -> None:
    """Validate ``payload`` both ways; what passes must go back out through ``to_wire``."""
    for validate, kind in ((validate_request, "request"), (validate_response, "response")):
        try:
            typed = validate(protocol, action, payload, message_id=message_id)
        except FrameError as exc:
            check_error(exc, protocol, PAYLOAD_CODES)
            if exc.message_id != message_id:
                raise AssertionError(f"{exc!r} lost the message id {message_id!r}") from None
            OUTCOMES[f"{kind} {exc.code}"] += 1
            continue
        if not isinstance(typed, msgspec.Struct):
            raise AssertionError(f"{validate.__name__} returned {typed!r}")
        to_wire(protocol, action, typed, kind)  # type: ignore[arg-type]
        OUTCOMES[f"{kind} valid"] += 1


TOKENS = sorted(schema_tokens())


def any_value(data: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    """A JSON value of any type, at most three levels deep."""
    kind = data.ConsumeIntInRange(0, 7 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return data.ConsumeBool()
    if kind == 2:
        return data.ConsumeInt(data.ConsumeIntInRange(1, 10))
    if kind == 3:
        return data.ConsumeRegularFloat() if data.ConsumeBool() else data.ConsumeFloat()
    if kind == 4:
        return data.ConsumeUnicodeNoSurrogates(data.ConsumeIntInRange(0, 64))
    if kind == 5:
        return TOKENS[data.ConsumeIntInRange(0, len(TOKENS) - 1)]
    if kind == 6:
        return [any_value(data, depth + 1) for _ in range(data.ConsumeIntInRange(0, 3))]
    return {
        TOKENS[data.ConsumeIntInRange(0, len(TOKENS) - 1)]: any_value(data, depth + 1)
        for _ in range(data.ConsumeIntInRange(0, 3))
    }


def mutate(node: Any, data: atheris.FuzzedDataProvider) -> None:
    """Change ``node`` (a dict or list) or, chosen by ``data``, one of its containers."""
    children = [
        child
        for child in (node.values() if type(node) is dict else node)
        if child and type(child) in (dict, list)
    ]
    if children and data.ConsumeBool():
        mutate(children[data.ConsumeIntInRange(0, len(children) - 1)], data)
        return
    op = data.ConsumeIntInRange(0, 2)
    if type(node) is dict:
        keys = sorted(node)
        if op == 0 and keys:
            del node[keys[data.ConsumeIntInRange(0, len(keys) - 1)]]
        elif op == 1 and keys:
            node[keys[data.ConsumeIntInRange(0, len(keys) - 1)]] = any_value(data)
        else:
            node[TOKENS[data.ConsumeIntInRange(0, len(TOKENS) - 1)]] = any_value(data)
    elif op == 0 and node:
        node.pop(data.ConsumeIntInRange(0, len(node) - 1))
    elif op == 1 and node:
        node.append(node[data.ConsumeIntInRange(0, len(node) - 1)])
    else:
        node.append(any_value(data))


def mutated_text(protocol: str, raw: bytes) -> str:
    """A CALL of the session, its payload changed as ``raw`` says."""
    data = atheris.FuzzedDataProvider(raw)
    calls = CALLS[protocol]
    action, payload = calls[data.ConsumeIntInRange(0, len(calls) - 1)]
    if data.ConsumeIntInRange(0, 7) == 0:  # another action's payload
        action = ACTIONS[protocol][data.ConsumeIntInRange(0, len(ACTIONS[protocol]) - 1)]
    payload = msgspec.json.decode(msgspec.json.encode(payload))  # a private copy
    for _ in range(data.ConsumeIntInRange(0, 4)):
        mutate(payload, data)
    return encode_call("fz", action, payload)


def frame_text(data: bytes) -> tuple[str, str] | None:
    """The protocol and the frame text that ``data`` stands for (see the module doc)."""
    if len(data) < 2:
        return None
    protocol = PROTOCOLS[data[0] & 1]
    mode = (data[0] >> 1) % 3
    if mode == MODE_TEXT:
        return protocol, data[1:].decode("utf-8", "surrogateescape")
    if mode == MODE_PAYLOAD:
        action = ACTIONS[protocol][data[1] % len(ACTIONS[protocol])]
        payload = data[2:].decode("utf-8", "surrogateescape")
        return protocol, f'[2,"fz","{action}",{payload}]'
    return protocol, mutated_text(protocol, data[1:])


def _answer(frame_of: Any, protocol: str, text: str) -> tuple[Any, ...]:
    try:
        frame = frame_of(text, protocol)
    except FrameError as exc:
        return ("malformed", exc.message_id, exc.code, exc.description)
    if not isinstance(frame, Call):
        return ("frame", frame)
    try:
        request = validate_request(protocol, frame.action, frame.payload, message_id="fz")
    except FrameError as exc:
        return ("invalid", frame, exc.code, exc.description)
    return ("call", frame, request, frame.request in (None, request))


def check_one_pass(protocol: str, text: str) -> None:
    """``parse_frame``'s one decode pass answers as the way by builtins it replaced does
    (``_parse_builtins``, then ``validate_request``): the same frame error, or the same frame,
    payload error or request, and a request decoded in one pass equal to the converted one."""
    one_pass = _answer(parse_frame, protocol, text)
    builtins = _answer(lambda text, _protocol: _parse_builtins(text), protocol, text)
    if one_pass != builtins or one_pass[-1] is False:
        raise AssertionError(f"one pass {one_pass!r}, by builtins {builtins!r}")


def test_one_input(data: bytes) -> None:
    OUTCOMES["inputs"] += 1
    if OUTCOMES["inputs"] % REPORT_EVERY == 0:  # libFuzzer ends the process without atexit
        print("frames fuzz:", dict(sorted(OUTCOMES.items())), file=sys.stderr, flush=True)
    made = frame_text(data)
    if made is None:
        return
    protocol, text = made
    check_one_pass(protocol, text)
    try:
        frame = parse_frame(text, protocol)
    except FrameError as exc:
        check_error(exc, protocol, FRAME_CODES)
        OUTCOMES[f"frame {exc.code}"] += 1
        return
    OUTCOMES[f"frame {type(frame).__name__}"] += 1
    again = parse_frame(reencoded(frame), protocol)
    if again != frame and not (isinstance(frame, CallErrorFrame) and len(frame.description) > 255):
        raise AssertionError(f"{frame!r} parsed back as {again!r}")
    if isinstance(frame, Call):
        check_payload(protocol, frame.action, frame.payload, frame.message_id)


def main() -> None:
    """libFuzzer's command line. An empty corpus directory given first is seeded, and a
    dictionary of the schemas' names (quoted, as in JSON) is written beside it and used."""
    argv = list(sys.argv)
    corpus = next((Path(arg) for arg in argv[1:] if not arg.startswith("-")), None)
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for number, seed in enumerate(seeds()):
                (corpus / f"seed-{number}").write_bytes(seed)
        dictionary = corpus.with_suffix(".dict")
        entries = [msgspec.json.encode(f'"{token}"') for token in sorted(schema_tokens())]
        dictionary.write_bytes(b"\n".join(entries) + b"\n")
        argv.append(f"-dict={dictionary}")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
