"""The error tree: every failed CALL of ours names its station and action, end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from chargeledger.core.errors import (
    CallError,
    CallTimeout,
    CallTooLarge,
    ChargeLedgerError,
    OutboundCallFailed,
    StationBusy,
    StationOffline,
)
from chargeledger.core.http.problems import COMMAND_ERRORS, command_problem
from chargeledger.core.settings import Settings
from tests.harness import RunningServer, raw_station, running_server

FAILURES: list[OutboundCallFailed] = [
    StationOffline(station="CP-1", action="Reset"),
    StationBusy(station="CP-1", action="Reset", limit=32),
    CallTimeout(station="CP-1", action="Reset", timeout=30.0),
    CallError("NotSupported", "no", {"why": 1}, station="CP-1", action="Reset"),
    CallTooLarge(station="CP-1", action="Reset", size=70_000, limit=65_536),
]


def test_every_member_of_the_tree_is_covered_here() -> None:
    assert {type(failure) for failure in FAILURES} == set(OutboundCallFailed.__subclasses__())
    assert issubclass(OutboundCallFailed, ChargeLedgerError)


@pytest.mark.parametrize("failure", FAILURES, ids=lambda failure: type(failure).__name__)
def test_a_failed_call_names_its_station_and_action(failure: OutboundCallFailed) -> None:
    assert (failure.station, failure.action) == ("CP-1", "Reset")
    assert str(failure).startswith("Reset to 'CP-1': ") and failure.reason in str(failure)


def test_offline_before_any_call_names_the_station_only() -> None:
    offline = StationOffline(station="CP-1", action=None)
    assert offline.action is None
    assert str(offline) == "station 'CP-1': not connected to this node"


def test_messages_say_why() -> None:
    offline, busy, timeout, error, too_large = (str(failure) for failure in FAILURES)
    assert offline.endswith("not connected to this node")
    assert busy.endswith("the station's call queue is full (32 waiting)")
    assert timeout.endswith("no answer within 30 s")
    assert error.endswith("answered NotSupported: no")
    assert too_large.endswith("the frame would be 70000 bytes, more than max_frame_bytes (65536)")


@pytest.mark.parametrize("failure", FAILURES, ids=lambda failure: type(failure).__name__)
def test_every_failed_call_is_a_problem_of_its_own_naming_the_action(
    failure: OutboundCallFailed,
) -> None:
    assert isinstance(failure, COMMAND_ERRORS)
    problem = command_problem(failure, "r1", "CP-1")
    assert problem.extra is not None and isinstance(problem.extra, dict)
    assert problem.extra["action"] == "Reset" and problem.extra["station"] == "CP-1"
    assert problem.detail == str(failure)
    slugs = {command_problem(other, "r1", "CP-1").type_ for other in FAILURES}
    assert len(slugs) == len(FAILURES)


def test_busy_asks_to_retry_and_a_callerror_carries_what_the_station_sent() -> None:
    busy = command_problem(FAILURES[1], "r1", "CP-1")
    assert busy.status_code == 503 and busy.headers == {"Retry-After": "1"}
    error = command_problem(FAILURES[3], "r1", "CP-1")
    assert error.extra is not None and isinstance(error.extra, dict)
    assert (error.extra["code"], error.extra["description"], error.extra["details"]) == (
        "NotSupported",
        "no",
        {"why": 1},
    )


def test_the_gateway_raises_each_failure_with_its_station_and_action(tmp_path: Path) -> None:
    """One silent station, a queue of one: in flight (times out), queued (answered with a
    CALLERROR), refused as busy; then one in flight when it leaves, and one after."""

    async def outcome(server: RunningServer, action: str, payload: dict[str, Any]) -> Any:
        assert server.csms is not None
        try:
            return await server.arun(server.csms.call, "QUIET", action, payload)
        except OutboundCallFailed as exc:
            return exc

    async def scenario(server: RunningServer) -> list[Any]:
        assert server.csms is not None
        ws = await raw_station(server.url, "QUIET", ["ocpp1.6"])
        await ws.send('[2,"h","Heartbeat",{}]')
        assert json.loads(await ws.recv())[1] == "h"  # the session is serving
        in_flight = asyncio.create_task(outcome(server, "ClearCache", {}))
        assert json.loads(await ws.recv())[2] == "ClearCache"
        queued = asyncio.create_task(
            outcome(server, "ChangeAvailability", {"connectorId": 0, "type": "Operative"})
        )
        session = server.csms.gateway.sessions["QUIET"]
        while session.outbound_send.statistics().current_buffer_used < 1:
            await asyncio.sleep(0.01)  # until it waits in the queue
        busy = await outcome(server, "GetConfiguration", {})
        timed_out = await in_flight
        call = json.loads(await ws.recv())
        assert call[2] == "ChangeAvailability"
        await ws.send(json.dumps([4, call[1], "NotSupported", "not here", {"x": 1}]))
        refused = await queued
        leaving = asyncio.create_task(outcome(server, "Reset", {"type": "Soft"}))
        assert json.loads(await ws.recv())[2] == "Reset"
        await ws.close()
        gone = await leaving
        after = await outcome(server, "UnlockConnector", {"connectorId": 1})
        return [busy, timed_out, refused, gone, after]

    settings = Settings(
        port=0, store=f"sqlite:///{tmp_path / 'e.db'}", call_timeout=0.5, outbound_queue=1
    )
    with running_server(settings) as server:
        busy, timed_out, refused, gone, after = asyncio.run(scenario(server))
    assert isinstance(busy, StationBusy) and busy.limit == 1
    assert isinstance(timed_out, CallTimeout) and timed_out.timeout == 0.5
    assert isinstance(refused, CallError)
    assert (refused.code, refused.description, refused.details) == (
        "NotSupported",
        "not here",
        {"x": 1},
    )
    assert isinstance(gone, StationOffline) and gone.reason == "disconnected before answering"
    assert isinstance(after, StationOffline) and after.reason == "not connected to this node"
    assert [(e.station, e.action) for e in (busy, timed_out, refused, gone, after)] == [
        ("QUIET", "GetConfiguration"),
        ("QUIET", "ClearCache"),
        ("QUIET", "ChangeAvailability"),
        ("QUIET", "Reset"),
        ("QUIET", "UnlockConnector"),
    ]
