"""What following the log costs on PostgreSQL, and the view lag between two nodes (a
benchmark, not a test; docs/cluster.md has the figures).

    python benchmarks/cluster_follow.py cost      # one node: plain writer vs following stack
    python benchmarks/cluster_follow.py lag       # node B's lag behind a loaded node A
    python benchmarks/cluster_follow.py lag --tasks 300

``cost``: 100 trio tasks append a CALL + CALLRESULT pair each as fast as they can for 8 s,
through the one-node path (``GroupCommitWriter`` -> ``CommitDispatcher``) and through a
following node's (notify trigger, ``FollowingWriter`` -> ``LogFollower`` ->
``ClusterDispatcher``), each on a fresh schema, twice, alternating: appends per second and
this process's CPU per append.

``lag``: node A (a following stack) is appended to by ``--tasks`` tasks, each a pair every
50 ms; node B, a second following stack on its own connections in the same process, follows
the schema. The lag of each of A's batches is the time from A's writer delivering it to B
having folded it. Both nodes share this process's event loop and GIL, so under load the
figure also counts B waiting for A's work: separate processes lag less.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable

import trio
from psycopg import sql

from chargeledger.core.cluster import ClusterDispatcher
from chargeledger.core.dispatcher import CommitDispatcher
from chargeledger.core.events import FrameLogged, Recorded, SessionOpened, session_stream
from chargeledger.core.feed import CommitFeed
from chargeledger.core.follower import FollowingWriter, LogFollower
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.core.store import Store, open_store, postgres_connection, postgres_schema
from chargeledger.core.writer import GroupCommitWriter
from chargeledger.projections import Views

SERVER = os.environ.get("CHARGELEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def drop_postgres_schema(url: str) -> None:
    with postgres_connection(url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(postgres_schema(url))))


def _schema() -> str:
    return f"{SERVER}?schema=bench_follow_{uuid.uuid4().hex[:8]}"


def _dispatcher(store: Store, node: str) -> ClusterDispatcher:
    settings = Settings(store=store.url, node=node)
    return ClusterDispatcher(Views(), PluginHost(settings), CommitFeed(), store=store, node=node)


async def _station(
    writer: GroupCommitWriter, index: int, pause: float, done: Callable[[], None]
) -> None:
    session = uuid.uuid4().hex
    stream = session_stream(session)
    opened = SessionOpened(
        station=f"CP{index}", session=session, protocol="ocpp1.6", at=time.time(), node="a"
    )
    await writer.append([(stream, opened)], new_stream=True)
    while True:
        frames = [
            ('[2,"1","Heartbeat",{}]', "in"),
            ('[3,"1",{"currentTime":"2026-12-02T10:00:00Z"}]', "out"),
        ]
        await writer.append(
            [
                (
                    stream,
                    FrameLogged(
                        station=f"CP{index}",
                        session=session,
                        direction=direction,  # type: ignore[arg-type]
                        text=text,
                        at=time.time(),
                    ),
                )
                for text, direction in frames
            ]
        )
        done()
        await trio.sleep(pause)


async def _cost(mode: str) -> None:
    url = _schema()
    store = open_store(url)
    appends = 0

    def done() -> None:
        nonlocal appends
        appends += 1

    try:
        async with trio.open_nursery() as nursery:
            if mode == "one-node":
                settings = Settings(store=url, node="a")
                plain = CommitDispatcher(Views(), PluginHost(settings), CommitFeed())
                writer = GroupCommitWriter(store, on_commit=plain.on_commit)
            else:
                following = _dispatcher(store, "a")
                follower = LogFollower(store, following.fold, 0)
                await nursery.start(follower.run)
                writer = FollowingWriter(store, follower, following.feed.count)
            async with writer, trio.open_nursery() as stations:
                for index in range(100):
                    stations.start_soon(_station, writer, index, 0.0, done)
                await trio.sleep(2)
                first, cpu, started = appends, time.process_time(), time.monotonic()
                await trio.sleep(8)
                count = appends - first
                cpu, elapsed = time.process_time() - cpu, time.monotonic() - started
                stations.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        print(
            f"{mode:>9}: {count / elapsed:6.0f} appends/s, "
            f"{1e6 * cpu / count:4.0f} us of this process's CPU per append"
        )
    finally:
        store.close()
        drop_postgres_schema(url)


async def _lag(tasks: int) -> None:
    url = _schema()
    store_a, store_b = open_store(url), open_store(url)
    committed: dict[int, float] = {}
    lags: list[float] = []
    appends = 0

    def done() -> None:
        nonlocal appends
        appends += 1

    try:
        node_a, node_b = _dispatcher(store_a, "a"), _dispatcher(store_b, "b")

        def fold_b(events: list[Recorded]) -> None:
            node_b.fold(events)
            now = time.monotonic()
            for recorded in events:
                sent = committed.pop(recorded.position, None)
                if sent is not None:
                    lags.append(now - sent)

        def delivered(batch: list[Recorded]) -> None:
            committed[batch[-1].position] = time.monotonic()

        follower_a = LogFollower(store_a, node_a.fold, 0)
        follower_b = LogFollower(store_b, fold_b, 0)
        async with trio.open_nursery() as nursery:
            await nursery.start(follower_a.run)
            await nursery.start(follower_b.run)
            writer = FollowingWriter(store_a, follower_a, delivered)
            async with writer, trio.open_nursery() as stations:
                for index in range(tasks):
                    stations.start_soon(_station, writer, index, 0.05, done)
                await trio.sleep(2)
                lags.clear()
                first = appends
                await trio.sleep(8)
                rate = 2 * (appends - first) / 8
                stations.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        lags.sort()

        def quantile(q: float) -> float:
            return 1000 * lags[min(len(lags) - 1, int(q * len(lags)))]

        print(
            f"{tasks} tasks, {rate:.0f} events/s on node A: node B's lag median "
            f"{quantile(0.5):.1f} ms, p99 {quantile(0.99):.1f} ms, max {1000 * lags[-1]:.1f} ms "
            f"({len(lags)} batches)"
        )
    finally:
        store_a.close()
        store_b.close()
        drop_postgres_schema(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["cost", "lag"])
    parser.add_argument("--tasks", type=int, default=100, help="appending tasks of node A (lag)")
    args = parser.parse_args()
    if args.what == "cost":
        for mode in ("one-node", "following", "one-node", "following"):
            trio.run(_cost, mode)
    else:
        trio.run(_lag, args.tasks)


if __name__ == "__main__":
    main()
