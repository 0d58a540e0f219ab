"""Several nodes on one PostgreSQL schema (docs/cluster.md): every node folds every node's
events (views, the SSE stream), reactions and timers run once cluster-wide, and the worker
(``chargeledger worker``) can be killed with SIGKILL and restarted without losing or
doubling anything. The stations are the ``ocpp`` package's charge points."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from ocpp.v16 import call as call16
from psycopg import sql

from chargeledger.core.audit.findings import Auditor, Finding, select
from chargeledger.core.audit.progress import scan
from chargeledger.core.audit.report import Published, read_published
from chargeledger.core.audit.verify import ChainVerifier
from chargeledger.core.cluster import AuditTable, ClusterDispatcher
from chargeledger.core.console.audit import published_audit
from chargeledger.core.console.routes import ROUTES as CONSOLE_ROUTES
from chargeledger.core.errors import StreamConflict
from chargeledger.core.events import (
    CommandRequested,
    Recorded,
    SessionClosed,
    SessionOpened,
    TimerFired,
    TimerStarted,
    session_stream,
    timer_stream,
)
from chargeledger.core.feed import CommitFeed
from chargeledger.core.firmware import CampaignRequest
from chargeledger.core.follower import LogFollower, prepare_cluster_tables
from chargeledger.core.http.keys import new_key
from chargeledger.core.plugin import hookimpl
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import ApiKey, Settings
from chargeledger.core.store import open_store, postgres_connection, postgres_schema
from chargeledger.core.times import rfc3339
from chargeledger.projections import Views
from chargeledger.projections.firmware import campaign_timer
from chargeledger.projections.reservations import reservation_timer
from tests import test_e2e_v16
from tests.harness import RunningServer, running_server
from tests.polling import wait_for
from tests.test_e2e_v201 import until
from tests.test_reservations import reserve

pytestmark = pytest.mark.postgres


def node(store: str, name: str, **more: Any) -> Settings:
    return Settings(port=0, store=store, node=name, **more)


def log_of(store: str) -> list[Recorded]:
    opened = open_store(store)
    try:
        return list(opened.iter_all())
    finally:
        opened.close()


def timer_events(store: str, name: str) -> list[Recorded]:
    stream = timer_stream(name)
    return [r for r in log_of(store) if r.stream == stream]


@contextmanager
def worker(store: str, name: str = "worker") -> Iterator[subprocess.Popen[bytes]]:
    """``chargeledger worker`` as a process of its own; killed on leaving if still running
    (its log is printed, for a failing test's report)."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chargeledger.core.cli",
                "worker",
                "--store",
                store,
                "--node",
                name,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(30)
            output.seek(0)
            print(output.read().decode(errors="replace"))


def leads(store: str, name: str) -> None:
    """Wait until the process named ``name`` leads: the probe timers (due now) it is given
    are fired by it."""
    deadline = time.monotonic() + 60
    firer = None
    while firer != name:
        assert time.monotonic() < deadline, f"{name} never led (the last probe: {firer})"
        probe = f"probe:{name}:{time.monotonic_ns()}"
        opened = open_store(store)
        try:
            started = TimerStarted(name=probe, due=0.0, at=time.time())
            opened.append([(timer_stream(probe), 1, started)])
        finally:
            opened.close()

        def fired_by(probe: str = probe) -> str | None:
            events = timer_events(store, probe)
            fired = [r.event for r in events if isinstance(r.event, TimerFired)]
            return fired[0].node if fired else None

        firer = wait_for(fired_by, what="the probe timer fired", timeout=30)


def test_node_b_sees_and_streams_a_station_of_node_a(postgres_url: str) -> None:
    key = new_key()
    from chargeledger.core.http.keys import hash_key

    api_key = ApiKey(name="reader", role="admin", sha256=hash_key(key))
    with (
        running_server(node(postgres_url, "node-a")) as a,
        running_server(node(postgres_url, "node-b", api_port=0, api_keys=[api_key])) as b,
    ):
        assert a.csms is not None and b.csms is not None

        async def scenario() -> float:
            cp, ws, task = await test_e2e_v16.connect(a, "CP-A1")
            try:
                await cp.call(
                    call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                state = await until(
                    b,
                    lambda: (
                        (s := b.csms.views.stations.get("CP-A1")) and s.connected and s.boot and s
                    ),  # type: ignore[union-attr]
                    "node B's views show CP-A1 connected and booted",
                )
                assert state.node == "node-a" and state.boot is not None
                assert "CP-A1" not in b.csms.connected  # type: ignore[union-attr]
                # B's event stream, from B's newest position: A's next frames arrive live,
                # woken by the follower (not by the stream's 10 s idle re-read).
                base = f"http://127.0.0.1:{b.csms.api_port}"  # type: ignore[union-attr]
                headers = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                    after = b.csms.feed.position  # type: ignore[union-attr]
                    params = {"after": after, "station": "CP-A1", "kind": "FrameLogged"}
                    async with http.stream(
                        "GET", "/api/stream", params=params, headers=headers
                    ) as response:
                        assert response.status_code == 200
                        sent = time.monotonic()
                        await cp.call(call16.Heartbeat())
                        async for line in response.aiter_lines():
                            if line.startswith("data:") and "Heartbeat" in line:
                                return time.monotonic() - sent
            finally:
                await ws.close()
                task.cancel()
            raise AssertionError("the stream ended")

        elapsed = asyncio.run(scenario())
        assert elapsed < 5.0, f"node B streamed node A's frame after {elapsed:.1f} s"
        # B's feed was woken by A's commits, B's frame counters count only its own.
        assert b.csms.feed.frames_in == 0 and a.csms.feed.frames_in >= 2


def test_view_lag_between_two_nodes(postgres_url: str) -> None:
    """An event committed on node A is folded on node B within a bounded lag (the figure in
    docs/cluster.md comes from this measurement)."""
    with (
        running_server(node(postgres_url, "node-a")) as a,
        running_server(node(postgres_url, "node-b")) as b,
    ):
        assert a.csms is not None and b.csms is not None
        lags: list[float] = []
        for index in range(20):
            name = f"lag:{index}"
            started = TimerStarted(name=name, due=time.time() + 3600, at=time.time())

            async def append_on_a(name: str, started: TimerStarted) -> int:
                recorded = await a.csms.writer.append([(timer_stream(name), started)])  # type: ignore[union-attr]
                return recorded[-1].position

            position = a.run(append_on_a, name, started)
            committed = time.monotonic()

            async def folded_on_b(position: int) -> None:
                while b.csms.views.position < position:  # type: ignore[union-attr]
                    await b.csms.feed.wait_beyond(b.csms.feed.position, 10)  # type: ignore[union-attr]

            b.run(folded_on_b, position)
            lags.append(time.monotonic() - committed)
        lags.sort()
        print(
            f"view lag: median {lags[len(lags) // 2] * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms"
        )
        # Woken by notifications: polling alone (every second) would make the median ~0.5 s.
        assert lags[len(lags) // 2] < 0.3
        assert lags[-1] < 1.5  # within a poll interval even had a notification been lost
        assert b.csms.views.timers.pending().keys() >= {f"lag:{i}" for i in range(20)}


def test_own_commit_waits_for_the_events_of_other_nodes_before_it(postgres_url: str) -> None:
    """A node's append returns with its events folded, in position order after the events
    another process committed just before (no notification needed: the gap is read)."""
    with running_server(node(postgres_url, "node-a")) as a:
        assert a.csms is not None
        other = open_store(postgres_url)
        try:
            before = other.append(
                [("timer:other", 1, TimerStarted(name="other", due=time.time() + 3600, at=0.0))]
            )
        finally:
            other.close()

        async def append_and_read() -> tuple[int, bool]:
            started = TimerStarted(name="own", due=time.time() + 3600, at=0.0)
            recorded = await a.csms.writer.append([(timer_stream("own"), started)])  # type: ignore[union-attr]
            pending = a.csms.views.timers.pending()  # type: ignore[union-attr]
            return recorded[-1].position, {"other", "own"} <= pending.keys()

        position, both = a.run(append_and_read)
        assert position > before[-1].position and both


def test_follower_folds_in_order_across_held_batches_and_holes(postgres_url: str) -> None:
    """The follower alone: own batches that arrive after a hole of the sequence and after
    another writer's events are folded once each, in position order."""
    import trio

    store = open_store(postgres_url)
    folded: list[int] = []
    try:

        async def main() -> None:
            follower = LogFollower(
                store, lambda events: folded.extend(r.position for r in events), 0
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(follower.run)
                first = await trio.to_thread.run_sync(
                    store.append, [("s:1", 1, TimerStarted(name="a", due=0.0, at=0.0))]
                )
                with pytest.raises(StreamConflict):  # a rolled-back insert: a hole
                    await trio.to_thread.run_sync(
                        store.append, [("s:1", 1, TimerStarted(name="b", due=0.0, at=0.0))]
                    )
                own = await trio.to_thread.run_sync(
                    store.append, [("s:2", 1, TimerStarted(name="c", due=0.0, at=0.0))]
                )
                follower.offer(own)  # after the hole and the other event: held, gap read
                follower.offer(own)  # offered twice: folded once
                await follower.wait_folded(own[-1].position, timeout=10)
                assert folded == [first[0].position, own[0].position]
                nursery.cancel_scope.cancel()

        trio.run(main)
    finally:
        store.close()


def test_reservation_expires_once_with_two_nodes_and_a_worker(postgres_url: str) -> None:
    """The expiry timer started by node A's reaction is fired by the worker, once; both nodes
    fold the expiry."""
    with (
        running_server(node(postgres_url, "node-a")) as a,
        running_server(node(postgres_url, "node-b")) as b,
        worker(postgres_url),
    ):
        leads(postgres_url, "worker")

        async def scenario() -> int:
            cp, ws, task = await test_e2e_v16.connect(a, "CP-R")
            try:
                await cp.call(
                    call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                made = await reserve(
                    a, "CP-R", id_token="TAG", expiry=rfc3339(time.time() + 2), connector_id=1
                )
                assert made.accepted
                reservation_id: int = made.values["reservation_id"]
                for server in (a, b):
                    await until(
                        server,
                        lambda s=server: (
                            s.csms.views.reservations.get("CP-R", reservation_id).status  # type: ignore[union-attr]
                            == "expired"
                        ),
                        "the reservation expired",
                    )
                return reservation_id
            finally:
                await ws.close()
                task.cancel()

        reservation_id = asyncio.run(scenario())
    events = timer_events(postgres_url, reservation_timer("CP-R", reservation_id))
    assert [(type(r.event).__name__, r.event.node) for r in events] == [  # type: ignore[union-attr]
        ("TimerStarted", "node-a"),
        ("TimerFired", "worker"),
    ]


def test_a_node_leads_without_a_worker_and_yields_to_one(postgres_url: str) -> None:
    with running_server(node(postgres_url, "node-a")) as a:
        assert a.csms is not None
        leads(postgres_url, "node-a")
        with worker(postgres_url):
            leads(postgres_url, "worker")
        leads(postgres_url, "node-a")  # the worker killed: the node takes over


def test_worker_killed_and_restarted_loses_and_doubles_nothing(postgres_url: str) -> None:
    """A campaign's rollout steps are a chain of timers, each step's timer started by the
    reaction to the previous one firing: leader's work. The worker is killed (SIGKILL) in
    the middle of the chain and restarted; a node covers meanwhile. Every step is started
    once and fired once, none is missing."""
    with running_server(node(postgres_url, "node-a")) as a:
        assert a.csms is not None

        async def campaign() -> str:
            cp, ws, task = await test_e2e_v16.connect(a, "CP-F")
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            await ws.close()  # known, offline: each step finds nothing to update
            task.cancel()
            request = CampaignRequest(
                location="https://fw.example/1.bin", stations=["CP-F"], interval=1.0
            )
            state = await a.arun(partial(a.csms.create_campaign, request))  # type: ignore[union-attr]
            return state.created.campaign_id

        with worker(postgres_url) as first:
            leads(postgres_url, "worker")
            campaign_id = asyncio.run(campaign())
            wait_for(lambda: steps_fired(postgres_url, campaign_id) >= 2, what="two steps fired")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        wait_for(lambda: steps_fired(postgres_url, campaign_id) >= 4, what="steps fired by node-a")
        with worker(postgres_url):
            reached = steps_fired(postgres_url, campaign_id) + 3
            wait_for(
                lambda: steps_fired(postgres_url, campaign_id) >= reached,
                what="steps fired by the restarted worker",
                timeout=30,
            )

    last = steps_fired(postgres_url, campaign_id)
    firers: set[str] = set()
    for step in range(last):
        events = timer_events(postgres_url, campaign_timer(campaign_id, step))
        kinds = [type(r.event).__name__ for r in events]
        assert kinds == ["TimerStarted", "TimerFired"], f"step {step}: {kinds}"
        firers.add(events[1].event.node)  # type: ignore[union-attr]
    assert {"worker", "node-a"} <= firers
    # Every stream's hash chain holds, the timers' streams written by several processes too.
    opened = open_store(postgres_url)
    try:
        verifier = ChainVerifier()
        verifier.check(opened.read_rows(limit=100_000))
    finally:
        opened.close()
    assert verifier.breaks == [] and verifier.events > 10


def steps_fired(store: str, campaign_id: str) -> int:
    """How many consecutive rollout steps of the campaign fired, from step 0."""
    fired = {r.event.name for r in log_of(store) if isinstance(r.event, TimerFired)}
    step = 0
    while campaign_timer(campaign_id, step) in fired:
        step += 1
    return step


def test_worker_refuses_a_store_of_one_node(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'one.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", "worker", "--store", store],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "chargeledger worker: the worker needs a store several nodes share (PostgreSQL), "
        f"not {store}"
    )
    assert not (tmp_path / "one.db").exists()


def test_site_allocation_once_with_two_nodes(postgres_url: str) -> None:
    """A site defined on node B for a station charging on node A: the leader (node A, no
    worker running) reacts to the ``SiteDefined`` and sends the allocation once; node B,
    which recorded the change, does not react to it; both nodes show the allocation."""
    with running_server(node(postgres_url, "node-a")) as a:
        leads(postgres_url, "node-a")
        with running_server(node(postgres_url, "node-b")) as b:
            assert a.csms is not None and b.csms is not None

            async def scenario() -> None:
                cp, ws, task = await test_e2e_v16.connect(a, "CP-S")
                try:
                    await cp.call(
                        call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                    )
                    await cp.call(
                        call16.StartTransaction(
                            connector_id=1,
                            id_tag="TAG-S",
                            meter_start=0,
                            timestamp=rfc3339(time.time()),
                        )
                    )
                    await until(
                        b,
                        lambda: b.csms.views.charging_profiles.running("CP-S"),  # type: ignore[union-attr]
                        "node B folds the transaction",
                    )
                    await b.arun(partial(b.csms.define_site, "s", stations=["CP-S"], limit=16.0))  # type: ignore[union-attr]
                    for server in (a, b):
                        await until(
                            server,
                            lambda s=server: (
                                (got := s.csms.views.sites.allocations.get(("CP-S", 1)))  # type: ignore[union-attr]
                                and got.accepted
                            ),
                            "the allocation accepted",
                        )
                finally:
                    await ws.close()
                    task.cancel()

            asyncio.run(scenario())
    asked = [
        r.event
        for r in log_of(postgres_url)
        if isinstance(r.event, CommandRequested) and r.event.command == "SetChargingProfile"
    ]
    assert [(e.station, e.key, e.node) for e in asked] == [("CP-S", "plugins", "node-a")]


def test_a_second_worker_stands_by(postgres_url: str) -> None:
    with worker(postgres_url, "w1") as first:
        leads(postgres_url, "w1")
        with worker(postgres_url, "w2"):
            leads(postgres_url, "w1")  # the second one waits
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            leads(postgres_url, "w2")


def test_a_timer_outlives_the_node_that_started_it(postgres_url: str) -> None:
    """Node A records a reservation's expiry timer and stops before it is due; node B, the
    leader, fires it once."""
    with running_server(node(postgres_url, "node-b")) as b:
        leads(postgres_url, "node-b")
        with running_server(node(postgres_url, "node-a")) as a:

            async def scenario() -> int:
                cp, ws, task = await test_e2e_v16.connect(a, "CP-T")
                try:
                    await cp.call(
                        call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                    )
                    made = await reserve(
                        a, "CP-T", id_token="TAG", expiry=rfc3339(time.time() + 3), connector_id=1
                    )
                    assert made.accepted
                    reservation_id: int = made.values["reservation_id"]
                    return reservation_id
                finally:
                    await ws.close()
                    task.cancel()

            reservation_id = asyncio.run(scenario())
            name = reservation_timer("CP-T", reservation_id)
            wait_for(lambda: timer_events(postgres_url, name), what="the timer started")
        wait_for(lambda: b.run(_expired, b, reservation_id), what="node B expired the reservation")
    events = timer_events(postgres_url, name)
    assert [(type(r.event).__name__, r.event.node) for r in events] == [  # type: ignore[union-attr]
        ("TimerStarted", "node-a"),
        ("TimerFired", "node-b"),
    ]


async def _expired(server: RunningServer, reservation_id: int) -> bool:
    assert server.csms is not None
    state = server.csms.views.reservations.get("CP-T", reservation_id)
    return state is not None and state.status == "expired"


def test_a_commit_the_follower_cannot_fold_fails_its_append_in_bounded_time(
    postgres_url: str,
) -> None:
    """The store cannot be read (closed here): an own batch after a gap cannot be folded, so
    its waiter gets ``StoreUnavailable`` after the timeout instead of waiting for ever; the
    follower keeps running and logs."""
    import trio

    from chargeledger.core.errors import StoreUnavailable

    store = open_store(postgres_url)
    writer_store = open_store(postgres_url)
    try:

        async def main() -> None:
            follower = LogFollower(store, lambda events: None, 0, poll_interval=0.1)
            async with trio.open_nursery() as nursery:
                await nursery.start(follower.run)
                await trio.to_thread.run_sync(store.close)
                other = await trio.to_thread.run_sync(
                    writer_store.append, [("s:1", 1, TimerStarted(name="a", due=0.0, at=0.0))]
                )
                own = await trio.to_thread.run_sync(
                    writer_store.append, [("s:2", 1, TimerStarted(name="b", due=0.0, at=0.0))]
                )
                assert follower.position < other[0].position
                follower.offer(own)
                started = trio.current_time()
                with pytest.raises(StoreUnavailable, match="committed but was not folded"):
                    await follower.wait_folded(own[-1].position, timeout=0.5)
                assert trio.current_time() - started < 5
                nursery.cancel_scope.cancel()

        trio.run(main)
    finally:
        store.close()
        writer_store.close()


class _Reactions:
    """A plugin noting which session events its node reacted to."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def chargeledger_react(self, recorded: Recorded, views: Any) -> list[Any]:
        self.seen.append((type(recorded.event).__name__, recorded.stream))
        return []


def test_a_close_recorded_by_another_node_is_reacted_to_by_that_node(postgres_url: str) -> None:
    """A session's events are reacted to by the node that opened it, except the close another
    node records for it: the fence of a takeover (the taking node reacts) and the release of
    a node presumed dead (the releasing node reacts), since the old holder may be gone."""
    store = open_store(postgres_url)
    try:
        nodes = {}
        for name in ("node-a", "node-b", "node-c"):
            probe = _Reactions()
            dispatcher = ClusterDispatcher(
                Views(),
                PluginHost(Settings(store=postgres_url), plugins={"probe": probe}),
                CommitFeed(),
                store=store,
                node=name,
            )
            nodes[name] = (dispatcher, probe)
        log = [
            SessionOpened(station="CP", session="s1", at=1.0, protocol="ocpp1.6", node="node-a"),
            SessionOpened(
                station="CP", session="s2", at=2.0, protocol="ocpp1.6", node="node-b", replaces="s1"
            ),
            SessionClosed(
                station="CP", session="s1", at=2.0, code=1008, by="csms", replaced_by="s2"
            ),
            SessionClosed(
                station="CP", session="s2", at=3.0, code=1006, by="csms", released_by="node-c"
            ),
        ]
        batch = [
            Recorded(position=i + 1, stream=session_stream(e.session), version=1, event=e)
            for i, e in enumerate(log)
        ]
        for dispatcher, _ in nodes.values():
            dispatcher.fold(batch)
        assert nodes["node-a"][1].seen == [("SessionOpened", "session:s1")]
        assert nodes["node-b"][1].seen == [
            ("SessionOpened", "session:s2"),
            ("SessionClosed", "session:s1"),
        ]
        assert nodes["node-c"][1].seen == [("SessionClosed", "session:s2")]
    finally:
        store.close()


def test_a_worker_stops_on_sigterm(postgres_url: str) -> None:
    """SIGTERM stops a worker at once (docs/cluster.md): it has nothing to drain. (It once
    asked its CentralSystem's drain, which nothing runs on a worker, and went on forever.)"""
    with worker(postgres_url) as process:
        leads(postgres_url, "worker")
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def _published(store: str) -> tuple[int, str, float, Published] | None:
    table = AuditTable(store)
    try:
        row = table.published()
    finally:
        table.close()
    return None if row is None else (*row[:3], read_published(row[3]))


def _full_audit(store: str, position: int) -> list[Finding]:
    """``chargeledger audit``'s findings over the log up to ``position``."""
    opened = open_store(store)
    try:
        auditor = Auditor()
        for recorded in scan(opened, "audit", False, stop=position):
            auditor.feed(recorded)
        return select(auditor, opened)
    finally:
        opened.close()


def _shape(findings: list[Finding]) -> list[tuple[Any, ...]]:
    return [
        (f.kind, f.severity, f.station, f.transaction_ids, f.positions, f.trigger, f.detail)
        for f in findings
    ]


def test_the_worker_publishes_the_audit_the_console_shows_it(postgres_url: str) -> None:
    """The worker audits the log it folds and publishes the findings: those of a full audit
    over the same log (docs/cluster.md, "Audits"); the node's console shows them, with their
    position, age and worker; a worker killed with SIGKILL and restarted publishes them
    again."""
    from chargeledger.core.http.keys import hash_key

    key = new_key()
    reader = ApiKey(name="reader", role="read", sha256=hash_key(key))
    settings = node(postgres_url, "node-a", api_port=0, api_keys=[reader])
    with running_server(settings, web=CONSOLE_ROUTES) as a:
        assert a.csms is not None

        async def scenario() -> None:
            cp, ws, task = await test_e2e_v16.connect(a, "CP-AUD")
            try:
                await cp.call(
                    call16.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                await cp.call(
                    call16.StartTransaction(
                        connector_id=1,
                        id_tag="TAG",
                        meter_start=0,
                        timestamp="2026-11-21T10:00:00Z",
                    )
                )
                # a stop for a transaction nobody started: a finding (a warning)
                await cp.call(
                    call16.StopTransaction(
                        meter_stop=1, timestamp="2026-11-21T11:00:00Z", transaction_id=987654
                    )
                )
            finally:
                await ws.close()
                task.cancel()

        asyncio.run(scenario())
        fragment = f"http://127.0.0.1:{a.csms.api_port}/console/fragment/audit"
        headers = {"Authorization": f"Bearer {key}"}
        before = httpx.get(fragment, headers=headers, timeout=10)
        assert before.status_code == 200 and "by worker" not in before.text  # none published

        def check(published: Published, position: int) -> None:
            full = _full_audit(postgres_url, position)
            listed = [f for f in full if f.severity != "info"]
            assert _shape(published.findings) == _shape(listed)
            counts = Counter((f.severity, f.kind) for f in full)
            assert {(s, k): n for s, k, n in published.counts} == counts
            assert {"stop_for_unknown_transaction", "transaction_never_ended"} <= {
                f.kind for f in listed
            }
            assert published.summary.last_position == position

        with worker(postgres_url) as first:
            position, by, age, published = wait_for(
                lambda: _published(postgres_url), what="findings published"
            )
            assert by == "worker" and age < 30
            check(published, position)
            page = httpx.get(fragment, headers=headers, timeout=10)
            assert page.status_code == 200
            assert f"As of position <strong>{position}</strong>" in page.text
            assert "by worker <code>worker</code>" in page.text
            assert "stop_for_unknown_transaction" in page.text
            assert "run=1" in page.text  # the full audit, on this node, a click away
            first.kill()
            first.wait(30)
        with postgres_connection(postgres_url) as conn:
            conn.execute(
                sql.SQL("DELETE FROM {}").format(
                    sql.Identifier(postgres_schema(postgres_url), "chargeledger_audit")
                )
            )
        with worker(postgres_url):
            position, by, age, published = wait_for(
                lambda: _published(postgres_url), what="findings published again"
            )
            check(published, position)


def test_no_readable_published_findings_leave_the_audit_page_as_it_was(
    postgres_url: str, tmp_path: Path
) -> None:
    """Without a worker's findings (no table yet, no row, a row this version cannot read) or
    on SQLite, the console's audit page shows no published findings: it runs the audit as
    it did without workers."""
    sqlite = open_store(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        assert published_audit(sqlite) is None
    finally:
        sqlite.close()
    store = open_store(postgres_url)
    table = AuditTable(postgres_url)
    try:
        assert published_audit(store) is None  # no table
        prepare_cluster_tables(postgres_url)
        assert published_audit(store) is None  # no row
        table.publish(5, "w", b'{"summary": "of another version"}')
        assert published_audit(store) is None
    finally:
        table.close()
        store.close()
