"""Micro-benchmark: CPU time to parse and validate inbound CALLs, by way of builtins (decode
to dicts, then ``msgspec.convert`` into the request type: the path before one decode pass)
against ``parse_frame``'s one pass straight into the type.

    python benchmarks/decode_pass.py                  # the simulator's saturation mix
    python benchmarks/decode_pass.py --store sqlite:///bench.db  # the CALLs a run recorded

The frames are those the saturation scenario sends (the simulator's own frames: a boot, its
status notifications, a transaction started, then MeterValues back to back), in both OCPP
versions, or with ``--store`` the inbound CALL texts of a store a run left. Per version, each
round times both ways over its frames with ``time.process_time`` (this process's CPU only, so
other load on the machine adds little but noise), alternating which goes first; the figures
are the medians over the rounds, in microseconds per frame. Both ways run on the same code:
``_parse_builtins`` is the old ``parse_frame`` as it was, kept for every refusal, and
``validate_request`` is unchanged; before timing, both are checked to give the same request.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from chargeledger.core.events import FrameLogged, SessionOpened
from chargeledger.core.frames import Call, _parse_builtins, parse_frame, validate_request
from chargeledger.core.simulator.frames import frames_for
from chargeledger.core.store import open_store
from chargeledger.schemas import OCPP16, PROTOCOLS


def simulated_mix(meter_values: int = 200) -> list[tuple[str, str]]:
    """(protocol, text) of one station per version: what a saturation run sends."""
    mix = []
    for protocol in PROTOCOLS:
        station = frames_for(protocol, "TAG", random.Random(1))
        texts = [station.boot(b"b")[1], station.status_notification(b"s", "Available")[1]]
        texts.append(station.start_transaction(b"t")[1])
        station.check_answer("start_transaction", {"transactionId": 1})
        texts += [station.meter_values(str(n).encode())[1] for n in range(meter_values)]
        mix += [(protocol, text.decode()) for text in texts]
    return mix


def recorded_mix(url: str) -> list[tuple[str, str]]:
    """(protocol, text) of every inbound CALL recorded in the store at ``url``, with the
    protocol its session was opened with."""
    store = open_store(url, create=False)
    protocols: dict[str, str] = {}
    mix = []
    for recorded in store.iter_all():
        event = recorded.event
        if isinstance(event, SessionOpened):
            protocols[event.session] = event.protocol
        elif (  # a station CALL (not binary, not ours)
            isinstance(event, FrameLogged)
            and event.direction == "in"
            and event.text.startswith("[2,")
        ):
            mix.append((protocols.get(event.session, OCPP16), event.text))
    return mix


def builtins_way(protocol: str, text: str) -> object:
    frame = _parse_builtins(text)
    assert isinstance(frame, Call)
    return validate_request(protocol, frame.action, frame.payload, message_id=frame.message_id)


def one_pass(protocol: str, text: str) -> object:
    frame = parse_frame(text, protocol)
    assert isinstance(frame, Call)
    if frame.request is None:  # as decide does
        return validate_request(protocol, frame.action, frame.payload)
    return frame.request


def timed(way: Callable[[str, str], object], mix: list[tuple[str, str]], loops: int) -> float:
    """CPU seconds per frame of ``way`` over ``mix``, ``loops`` times."""
    started = time.process_time()
    for _ in range(loops):
        for protocol, text in mix:
            way(protocol, text)
    return (time.process_time() - started) / (loops * len(mix))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a store URL whose inbound CALLs to use")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--loops", type=int, default=20)
    args = parser.parse_args()
    mix = recorded_mix(args.store) if args.store else simulated_mix()
    for protocol, text in mix:  # the same answer both ways, and the one pass taken
        assert builtins_way(protocol, text) == one_pass(protocol, text)
    ways = {"builtins then convert": builtins_way, "one pass": one_pass}
    for protocol in PROTOCOLS:
        frames = [(each, text) for each, text in mix if each == protocol]
        if not frames:
            continue
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for number in range(args.rounds):
            order = list(ways) if number % 2 == 0 else list(reversed(ways))
            for name in order:
                seconds[name].append(timed(ways[name], frames, args.loops))
        print(f"{protocol}: {len(frames)} frames x {args.loops} loops x {args.rounds} rounds")
        before = statistics.median(seconds["builtins then convert"])
        for name, values in seconds.items():
            median = statistics.median(values)
            spread = f"{min(values) * 1e6:.2f}-{max(values) * 1e6:.2f}"
            print(
                f"{name:>24}: {median * 1e6:6.2f} us per frame (range {spread}), "
                f"{median / before:.0%} of before"
            )


if __name__ == "__main__":
    main()
