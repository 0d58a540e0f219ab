"""The resumable event stream (Server-Sent Events): resumption without gaps or repeats while
stations keep sending, filters, and a stalled consumer that does not slow the gateway."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from ocpp.v16 import call

from chargeledger.core.events import CallTimedOut, Event, session_stream
from chargeledger.core.http.keys import new_key
from tests.harness import running_server
from tests.polling import eventually
from tests.test_http_api import ROLES, Api, api_settings, problem, station


@pytest.fixture(scope="module")
def api(module_server_store: str) -> Iterator[Api]:
    """One server for the module, on SQLite and then on PostgreSQL."""
    keys: dict[str, str] = {role: new_key() for role in ROLES}
    with running_server(api_settings(module_server_store, keys)) as server:
        yield Api(server, keys)


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The SSE messages of ``response`` as ``{field: value}``; comments under ``comment``."""
    message: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if message:
                yield message
            message = {}
        elif line.startswith(":"):
            message["comment"] = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            message[name] = value.removeprefix(" ")


async def take(
    http: httpx.AsyncClient, count: int, params: dict[str, str | int], headers: dict[str, str]
) -> list[dict[str, str]]:
    """The first ``count`` event messages of a new stream, then disconnect."""
    taken: list[dict[str, str]] = []
    async with http.stream("GET", "/api/stream", params=params, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for message in messages(response):
            if "id" in message:
                taken.append(message)
                if len(taken) == count:
                    break
    return taken


def station_events(api: Api, name: str, *, after: int) -> list[int]:
    """Positions of the events of station ``name`` after position ``after``, from the store."""
    assert api.server.csms is not None
    return [
        r.position
        for r in api.server.csms.store.iter_all()
        if getattr(r.event, "station", None) == name and r.position > after
    ]


def test_a_consumer_resumes_from_its_last_id_without_gaps_or_repeats(api: Api) -> None:
    async def scenario() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        async with station(api, "SSE-1") as cp, api.client("read") as http:
            stop = asyncio.Event()

            async def keep_sending() -> None:
                connector = 0
                while not stop.is_set():
                    await cp.call(call.Heartbeat(), suppress=False)
                    connector = connector % 2 + 1
                    await cp.call(
                        call.StatusNotification(
                            connector_id=connector, error_code="NoError", status="Available"
                        ),
                        suppress=False,
                    )

            sender = asyncio.create_task(keep_sending())
            try:
                first = await take(http, 25, {"station": "SSE-1", "after": 0}, {})
                # The station goes on while nobody listens: resuming must bridge a real gap.
                await eventually(
                    lambda: len(station_events(api, "SSE-1", after=int(first[-1]["id"]))) >= 10,
                    what="ten events committed while nobody listened",
                )
                # Last-Event-ID wins over the query parameter, as for a reconnecting EventSource.
                second = await take(
                    http, 60, {"station": "SSE-1", "after": 0}, {"Last-Event-ID": first[-1]["id"]}
                )
            finally:
                stop.set()
                await sender
        return first, second

    first, second = asyncio.run(scenario())
    assert api.server.csms is not None
    received = [int(m["id"]) for m in first + second]
    last = received[-1]
    expected = [p for p in station_events(api, "SSE-1", after=0) if p <= last]
    assert received == expected, "every event of the station, once, in log order"
    assert int(second[0]["id"]) > int(first[-1]["id"])
    for message in first + second:
        data = json.loads(message["data"])
        assert data["position"] == int(message["id"]) and data["kind"] == message["event"]
        assert data["event"]["station"] == "SSE-1"


def test_stream_filters_and_errors(api: Api) -> None:
    async def scenario() -> None:
        async with station(api, "SSE-2") as cp, api.client("read") as http:
            await cp.call(call.Heartbeat(), suppress=False)
            opened = await take(
                http, 1, {"station": "SSE-2", "kind": "SessionOpened", "after": 0}, {}
            )
            assert opened[0]["event"] == "SessionOpened"
            frames = await take(
                http, 4, {"station": "SSE-2", "kind": "FrameLogged", "after": 0}, {}
            )
            texts = [json.loads(m["data"])["event"]["text"] for m in frames]
            assert json.loads(texts[0])[2] == "BootNotification"
            assert json.loads(texts[2])[2] == "Heartbeat"
            # Without a start, only what comes next.
            async with http.stream("GET", "/api/stream", params={"station": "SSE-2"}) as response:
                await cp.call(call.Heartbeat(), suppress=False)
                message = await anext(messages(response))
            heartbeat = json.loads(json.loads(message["data"])["event"]["text"])
            assert heartbeat[2] == "Heartbeat" and int(message["id"]) > int(frames[-1]["id"])

            problem(
                await http.get("/api/stream", headers={"Last-Event-ID": "yesterday"}),
                400,
                "bad-request",
            )
            problem(await http.get("/api/stream", params={"kind": "Gossip"}), 400, "bad-request")
            problem(await http.get("/api/stream", params={"after": -1}), 400, "bad-request")
        async with api.client(None) as anonymous:
            problem(await anonymous.get("/api/stream"), 401, "unauthorized")

    asyncio.run(scenario())


def test_a_stalled_consumer_does_not_slow_the_gateway(api: Api) -> None:
    """A consumer that stops reading holds its own stream only: it is read from the store a
    page at a time at its pace, so station calls keep their latency."""
    assert api.server.csms is not None
    writer = api.server.csms.gateway.writer
    bulk: list[tuple[str, Event]] = [
        (
            session_stream("bulk"),
            CallTimedOut(
                station="BULK", session="bulk", at=time.time(), message_id=str(n), action="X" * 200
            ),
        )
        for n in range(20_000)
    ]
    for start in range(0, len(bulk), 2000):
        api.server.run(writer.append, bulk[start : start + 2000])

    async def scenario() -> tuple[list[float], list[int]]:
        async with station(api, "SSE-3") as cp, api.client("read") as http:
            params: dict[str, str | int] = {"after": 0, "station": "BULK"}
            async with http.stream("GET", "/api/stream", params=params) as stalled:
                assert stalled.status_code == 200
                stream = messages(stalled)
                positions = [int((await anext(stream))["id"])]  # then it stops reading
                latencies = []
                for _ in range(20):
                    started = time.perf_counter()
                    await cp.call(call.Heartbeat(), suppress=False)
                    latencies.append(time.perf_counter() - started)
                # Once it reads again it gets everything, in order.
                async for message in stream:
                    positions.append(int(message["id"]))
                    if len(positions) == len(bulk):
                        break
            return latencies, positions

    latencies, positions = asyncio.run(scenario())
    assert max(latencies) < 0.5, latencies
    assert positions == sorted(set(positions)) and len(positions) == len(bulk)
