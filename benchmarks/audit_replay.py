"""Audit and replay throughput on a log of a million frames (a benchmark, not a test).

    python benchmarks/audit_replay.py                       # 1,000,000 frames, SQLite
    python benchmarks/audit_replay.py --frames 200000       # smaller
    python benchmarks/audit_replay.py --store postgresql://postgres@127.0.0.1:5432/test?schema=bench
    python benchmarks/audit_replay.py --profile             # also profile the replay fold

Writes a log of OCPP 1.6 traffic (boot, status, a transaction with 40 meter values, heartbeats,
stop; a double stop and a retransmitted start now and then) from 2,000 stations straight
through ``Store.append`` (hash-chained, as the server writes), then times each command the
way ``chargeledger`` runs it, in this process: ``replay``, ``replay --save``, ``replay``
against that snapshot, ``audit --json``, ``verify``, ``replay --what-if``, and ``import`` of
an exported slice. Results go to stdout as a Markdown table; docs/performance.md has them.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from chargeledger.core.cli import main
from chargeledger.core.events import (
    Event,
    FrameLogged,
    SessionClosed,
    SessionOpened,
    session_stream,
)
from chargeledger.core.store import open_store
from chargeledger.core.times import rfc3339
from chargeledger.projections import Views
from chargeledger.tests.postgres import drop_postgres_schema

STATIONS = 2000
BATCH = 10_000

_encode = msgspec.json.Encoder().encode


def traffic(frames: int) -> Iterator[tuple[str, int, Event]]:
    """``(stream, version, event)`` of about ``frames`` frames, in log order."""
    at = 1_714_550_400.0
    ids = itertools.count(1)
    messages = itertools.count(1)
    written = 0
    for number in itertools.count(1):
        if written >= frames:
            return
        station = f"CP-{number % STATIONS:04d}"
        session = f"00000000-0000-4000-8000-{number:012d}"
        stream = session_stream(session)
        versions = itertools.count(1)

        def event(item: Event) -> tuple[str, int, Event]:
            return stream, next(versions), item  # noqa: B023 (used at once)

        def exchange(
            action: str, request: dict[str, object], response: dict[str, object]
        ) -> Iterator[tuple[str, int, Event]]:
            nonlocal at, written
            at += 10.0  # ten seconds between exchanges: plausible power
            written += 2
            if "currentTime" in response:  # as today's plugins answer: the frame's time
                response = {**response, "currentTime": rfc3339(at)}
            message = str(next(messages))
            for direction, frame in (
                ("in", [2, message, action, request]),
                ("out", [3, message, response]),
            ):
                yield event(
                    FrameLogged(
                        station=station,  # noqa: B023
                        session=session,  # noqa: B023
                        at=at,
                        direction="in" if direction == "in" else "out",
                        text=_encode(frame).decode(),
                    )
                )

        yield event(
            SessionOpened(station=station, session=session, at=at, protocol="ocpp1.6", node="bench")
        )
        now = rfc3339(at)
        yield from exchange(
            "BootNotification",
            {"chargePointVendor": "Acme", "chargePointModel": "EVC5"},
            {"status": "Accepted", "currentTime": now, "interval": 300},
        )
        yield from exchange(
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"},
            {},
        )
        transaction = next(ids)
        start = {"connectorId": 1, "idTag": "TAG", "timestamp": now, "meterStart": 1000}
        accepted = {"status": "Accepted"}
        yield from exchange(
            "StartTransaction", start, {"transactionId": transaction, "idTagInfo": accepted}
        )
        if number % 50 == 0:  # a retransmitted start answered with the same id
            yield from exchange(
                "StartTransaction", start, {"transactionId": transaction, "idTagInfo": accepted}
            )
        for sample in range(40):
            meter = {
                "timestamp": now,
                "sampledValue": [
                    {
                        "value": str(1000 + sample * 100),
                        "measurand": "Energy.Active.Import.Register",
                    }
                ],
            }
            yield from exchange(
                "MeterValues",
                {"connectorId": 1, "transactionId": transaction, "meterValue": [meter]},
                {},
            )
            if sample % 10 == 0:
                yield from exchange("Heartbeat", {}, {"currentTime": now})
        stop = {"transactionId": transaction, "meterStop": 5000, "timestamp": rfc3339(at)}
        for _ in range(2 if number % 40 == 0 else 1):  # now and then a double stop
            yield from exchange("StopTransaction", stop, {})
        yield event(SessionClosed(station=station, session=session, at=at, code=1000))


def write_log(url: str, frames: int) -> tuple[int, int, float]:
    """Events and frames written, and seconds taken."""
    store = open_store(url)
    started = time.perf_counter()
    events = written = 0
    heads: dict[str, bytes] = {}
    try:
        batch: list[tuple[str, int, Event]] = []
        for item in traffic(frames):
            batch.append(item)
            if len(batch) == BATCH:
                for recorded in store.append(batch, heads):
                    heads[recorded.stream] = recorded.hash or b""
                events += len(batch)
                written += sum(isinstance(e, FrameLogged) for _, _, e in batch)
                batch = []
                if len(heads) > 10_000:
                    heads.clear()  # the store looks a forgotten head up itself
        if batch:
            store.append(batch, heads)
            events += len(batch)
            written += sum(isinstance(e, FrameLogged) for _, _, e in batch)
    finally:
        store.close()
    return events, written, time.perf_counter() - started


def timed(*argv: str) -> tuple[float, int]:
    """Seconds ``chargeledger ARGV`` took in this process (its output discarded), and its exit
    status."""
    real = sys.stdout, sys.stderr
    with open(os.devnull, "wb") as sink:
        sys.stdout = sys.stderr = io.TextIOWrapper(sink, write_through=True)
        started = time.perf_counter()
        try:
            code = main(list(argv))
        finally:
            sys.stdout, sys.stderr = real
    return time.perf_counter() - started, code


def export_jsonl(url: str, path: Path, limit: int) -> int:
    """The first ``limit`` frames of the log as a JSON Lines file to import; lines written."""
    store = open_store(url)
    lines = 0
    try:
        with path.open("wb") as out:
            for recorded in store.iter_all():
                event = recorded.event
                if isinstance(event, FrameLogged):
                    out.write(
                        _encode(
                            {
                                "timestamp": rfc3339(event.at),
                                "station": event.station,
                                "direction": event.direction,
                                "frame": event.text,
                            }
                        )
                        + b"\n"
                    )
                    lines += 1
                    if lines >= limit:
                        break
    finally:
        store.close()
    return lines


def profile_replay(url: str) -> None:
    store = open_store(url)
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        Views.replay(store.iter_all())
        profiler.disable()
    finally:
        store.close()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(15)


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument(
        "--store", help="store URL (default: a SQLite file in a temporary directory)"
    )
    parser.add_argument("--import-lines", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="profile the replay fold too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'bench.db'}"
        snapshot = str(Path(tmp) / "views.json")
        events, frames, seconds = write_log(url, args.frames)
        rows = [("write (Store.append, 10k per batch)", seconds, 0)]
        for label, argv in (
            ("replay", ["replay", "--store", url, "--snapshot", snapshot]),
            ("replay --save", ["replay", "--store", url, "--snapshot", snapshot, "--save"]),
            (
                "replay (compared with the snapshot)",
                ["replay", "--store", url, "--snapshot", snapshot],
            ),
            ("audit --json", ["audit", "--store", url, "--json"]),
            ("verify", ["verify", "--store", url]),
            ("replay --what-if", ["replay", "--what-if", "--store", url]),
        ):
            rows.append((label, *timed(*argv)))
        print(f"{events:,} events, {frames:,} frames, {url.split('?')[0].split(':')[0]}")
        print("\n| run | seconds | frames/s | exit |\n| --- | --: | --: | --: |")
        for label, took, code in rows:
            print(f"| {label} | {took:.1f} | {frames / took:,.0f} | {code} |")
        if args.import_lines:
            exported = Path(tmp) / "export.jsonl"
            lines = export_jsonl(url, exported, args.import_lines)
            target = f"sqlite:///{Path(tmp) / 'imported.db'}"
            took, code = timed("import", str(exported), "--store", target)
            rate = lines / took
            print(f"| import ({lines:,} JSON lines, SQLite) | {took:.1f} | {rate:,.0f} | {code} |")
        if args.profile:
            profile_replay(url)
        if args.store and args.store.startswith("postgresql://") and "schema=" in args.store:
            drop_postgres_schema(args.store)


if __name__ == "__main__":
    main_benchmark()
