"""The group-commit writer on its own: N trio tasks each appending a CALL + CALLRESULT pair
(two ``FrameLogged`` events, one ``append``) in a loop for a while, as ``docs/write-path.md``
"Measured" describes. Prints one JSON line: events/s, appends/s, the writer's average batch
and commit time, the trio loop's lag p99, and the writer thread's CPU per event.

    python benchmarks/writer_append.py --store sqlite:///tmp/w.db            # a fresh file
    python benchmarks/writer_append.py --store 'postgresql://postgres@127.0.0.1/test?schema=wb1'
    python benchmarks/writer_append.py --store sqlite:///tmp/w.db --append-only 400  # no writer

The SQLite file is deleted before and after; a PostgreSQL schema (not ``public``) is dropped
before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from pathlib import Path

import trio
from psycopg import sql

from chargeledger.core.events import FrameLogged
from chargeledger.core.store import open_store, postgres_connection, postgres_schema
from chargeledger.core.writer import GroupCommitWriter

__all__: list[str] = []


def _clear(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif url.startswith(("postgresql://", "postgres://")):
        schema = postgres_schema(url)
        if schema == "public":
            raise SystemExit("name a scratch schema (?schema=NAME): it is dropped")
        with postgres_connection(url) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _thread_cpu(native_id: int) -> float:
    """Seconds of CPU (user + system) the thread ``native_id`` of this process has used."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(url: str, tasks: int, seconds: float) -> dict[str, float]:
    store = open_store(url)
    counted = 0

    def on_commit(batch: list[object]) -> None:
        nonlocal counted
        counted += len(batch)

    lags: list[float] = []
    appends = 0
    try:
        async with GroupCommitWriter(store, on_commit=on_commit) as writer:
            thread = next(t for t in threading.enumerate() if t.name == "group-commit-writer")
            assert thread.native_id is not None
            deadline = trio.current_time() + seconds

            async def station(n: int) -> None:
                nonlocal appends
                session = str(uuid.uuid4())
                stream = f"session:{session}"
                first = True
                k = 0
                while trio.current_time() < deadline:
                    k += 1
                    call = FrameLogged(
                        station=f"CP{n}", session=session, at=time.time(), direction="in",
                        text=f'[2,"{k}","Heartbeat",{{}}]',
                    )  # fmt: skip
                    result = FrameLogged(
                        station=f"CP{n}", session=session, at=time.time(), direction="out",
                        text=f'[3,"{k}",{{"currentTime":"2026-01-01T00:00:00Z"}}]',
                    )  # fmt: skip
                    await writer.append([(stream, call), (stream, result)], new_stream=first)
                    first = False
                    appends += 1

            async def lag() -> None:
                while trio.current_time() < deadline:
                    before = trio.current_time()
                    await trio.sleep(0.001)
                    lags.append(trio.current_time() - before - 0.001)

            cpu_before = _thread_cpu(thread.native_id)
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lag)
                for n in range(tasks):
                    nursery.start_soon(station, n)
            elapsed = time.perf_counter() - started
            cpu = _thread_cpu(thread.native_id) - cpu_before
            stats = writer.statistics()
    finally:
        store.close()
    return {
        "events_per_s": counted / elapsed,
        "appends_per_s": appends / elapsed,
        "avg_batch": stats.avg_batch_size,
        "avg_commit_ms": stats.avg_commit_seconds * 1000,
        "loop_lag_p99_ms": statistics.quantiles(lags, n=100)[98] * 1000 if len(lags) > 1 else 0,
        "writer_cpu_us_per_event": cpu / counted * 1e6 if counted else 0.0,
        "events": counted,
    }


def _append_only(url: str, batch: int, seconds: float) -> dict[str, float]:
    """``Store.append`` alone, on this thread: batches of ``batch`` events (pairs on fresh
    streams, as the writer would give it) for ``seconds``; CPU (this process) per event."""
    store = open_store(url)
    events = 0
    try:
        cpu, started = time.process_time(), time.perf_counter()
        while time.perf_counter() - started < seconds:
            items = []
            for k in range(batch // 2):
                stream = f"session:{uuid.uuid4()}"
                for direction in ("in", "out"):
                    text = f'[2,"{k}","Heartbeat",{{}}]'
                    frame = FrameLogged(
                        station=f"CP{k}", session=stream, at=time.time(), direction=direction,
                        text=text,
                    )  # fmt: skip
                    items.append((stream, 1 if direction == "in" else 2, frame))
            store.append(items)
            events += len(items)
        cpu, elapsed = time.process_time() - cpu, time.perf_counter() - started
    finally:
        store.close()
    return {"events_per_s": events / elapsed, "cpu_us_per_event": cpu / events * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="a store URL (cleared before and after)")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--append-only",
        type=int,
        metavar="BATCH",
        help="time Store.append alone, in batches of BATCH events, instead of the writer",
    )
    args = parser.parse_args()
    _clear(args.store)
    try:
        if args.append_only:
            result = _append_only(args.store, args.append_only, args.seconds)
        else:
            result = trio.run(_measure, args.store, args.tasks, args.seconds)
    finally:
        _clear(args.store)
    print(json.dumps({"store": args.store.split("?")[0], **result}))


if __name__ == "__main__":
    main()
