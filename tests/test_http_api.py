"""The HTTP API against a running server: every route, every error status, keys and roles,
with real ``ocpp`` charge points on the other side."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h11
import httpx
import msgspec
import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from chargeledger.core.events import CommandRequested
from chargeledger.core.http.keys import hash_key, new_key
from chargeledger.core.settings import ApiKey, ApiRole, Settings, load_settings
from chargeledger.core.times import rfc3339
from tests.harness import RunningServer, raw_station, running_server
from tests.polling import eventually
from tests.test_e2e_v16 import Station

ROLES: tuple[ApiRole, ...] = ("read", "operator", "admin")


class Api:
    """A running server with the HTTP API and one key per role (key name = role name)."""

    def __init__(self, server: RunningServer, keys: dict[str, str]) -> None:
        self.server = server
        self.keys = keys
        assert server.csms is not None and server.csms.api_port is not None
        self.base = f"http://127.0.0.1:{server.csms.api_port}"

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def client(self, role: str | None = "admin") -> httpx.AsyncClient:
        headers = self.auth(role) if role is not None else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=10)


def api_settings(store: str, keys: dict[str, str], **more: Any) -> Settings:
    return Settings(
        port=0,
        store=store,
        node="api-node",
        api_port=0,
        api_keys=[ApiKey(name=role, role=role, sha256=hash_key(keys[role])) for role in ROLES],
        **more,
    )


@pytest.fixture(scope="module")
def api(module_server_store: str) -> Iterator[Api]:
    """One server for the module (stations get distinct ids per test), on SQLite and then on
    PostgreSQL: short call timeout and a one-deep call queue, so that 504 and 503 are quick
    to provoke."""
    keys: dict[str, str] = {role: new_key() for role in ROLES}
    store = module_server_store
    with running_server(api_settings(store, keys, call_timeout=1.0, outbound_queue=1)) as server:
        yield Api(server, keys)


class Recorder(Station):
    """The e2e test's obliging 1.6 charge point, remembering the remote starts it got."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.remote_starts: list[dict[str, Any]] = []

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **rest: Any) -> Any:
        self.remote_starts.append({"id_tag": id_tag, **rest})
        return call_result.RemoteStartTransaction(status="Accepted")


@asynccontextmanager
async def station(api: Api, name: str, protocol: str = "ocpp1.6") -> AsyncIterator[Recorder]:
    """A booted, connected ``Recorder`` named ``name``; on leaving, the station disconnects
    and the block waits until the server has recorded the close."""
    ws = await websockets.connect(
        f"{api.server.url}/{name}", subprotocols=[websockets.Subprotocol(protocol)]
    )
    cp = Recorder(name, ws)
    task = asyncio.create_task(cp.start())
    try:
        await cp.call(
            call.BootNotification(charge_point_model="EVC5", charge_point_vendor="Acme"),
            suppress=False,
        )
        yield cp
    finally:
        task.cancel()
        await ws.close()
        async with api.client("read") as http:

            async def closed() -> bool:
                found = await http.get(f"/api/stations/{name}")
                return found.status_code == 200 and found.json()["state"]["connected"] is False

            await eventually(closed, what=f"{name}'s close recorded")


def charge(cp: Recorder, tag: str, meter_start: int, meter_stop: int) -> Any:
    """One complete 1.6 transaction; returns the StopTransaction kwargs used."""

    async def run() -> dict[str, Any]:
        started = await cp.call(
            call.StartTransaction(
                connector_id=1,
                id_tag=tag,
                meter_start=meter_start,
                timestamp="2026-11-21T10:00:00Z",
            )
        )
        stop = {
            "meter_stop": meter_stop,
            "timestamp": "2026-11-21T11:00:00Z",
            "transaction_id": started.transaction_id,
        }
        await cp.call(call.StopTransaction(**stop), suppress=False)
        return stop

    return run()


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The RFC 9457 body of ``response``, checked to be the problem ``slug`` with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:chargeledger:problem:{slug}", body
    assert body["title"] and "detail" in body
    return body


def commands_of(api: Api, station_id: str) -> list[CommandRequested]:
    assert api.server.csms is not None
    return [
        r.event
        for r in api.server.csms.store.iter_all()
        if isinstance(r.event, CommandRequested) and r.event.station == station_id
    ]


# -- reads ---------------------------------------------------------------------------------


def test_station_list_and_detail(api: Api) -> None:
    async def scenario() -> None:
        async with station(api, "READ-1") as cp, api.client("read") as http:
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available"),
                suppress=False,
            )
            listed = (await http.get("/api/stations", params={"connected": "true"})).json()
            ids = [view["state"]["station"] for view in listed]
            assert "READ-1" in ids and ids == sorted(ids)
            by_status = (await http.get("/api/stations", params={"status": "Available"})).json()
            assert [v["state"]["station"] for v in by_status] == ["READ-1"]
            faulted = await http.get("/api/stations", params={"status": "Faulted"})
            assert faulted.json() == []
            accepted = await http.get("/api/stations", params={"boot_status": "Accepted"})
            assert "READ-1" in [v["state"]["station"] for v in accepted.json()]
            v201 = await http.get("/api/stations", params={"protocol": "ocpp2.0.1"})
            assert "READ-1" not in [v["state"]["station"] for v in v201.json()]

            detail = (await http.get("/api/stations/READ-1")).json()
            state = detail["state"]
            assert detail["registration"] is None
            assert state["connected"] is True and state["protocol"] == "ocpp1.6"
            assert state["boot"]["vendor"] == "Acme" and state["boot"]["status"] == "Accepted"
            assert state["connectors"]["1"]["status"] == "Available"
            assert state["node"] == "api-node"

            problem(await http.get("/api/stations/NOBODY"), 404, "not-found")
            problem(
                await http.get("/api/stations", params={"connected": "maybe"}), 400, "bad-request"
            )

        async with api.client("read") as http:
            offline = (await http.get("/api/stations", params={"connected": "false"})).json()
            assert "READ-1" in [v["state"]["station"] for v in offline]

    asyncio.run(scenario())


def test_station_list_pages(api: Api) -> None:
    """``limit`` and the ``Next-Cursor`` / ``Link`` headers walk the list in id order, every
    station once, filters kept; a cursor survives its station's removal; bad ones are 400."""

    async def scenario() -> None:
        async with api.client("admin") as http:
            for n in range(7):
                response = await http.put(f"/api/stations/PAGE-{n}/registration", json={})
                assert response.status_code == 200, response.text
            everything = (await http.get("/api/stations", params={"registered": "true"})).json()
            assert len(everything) >= 7

            pages: list[list[str]] = []
            params: dict[str, str | int] = {"registered": "true", "limit": 3}
            while True:
                page = await http.get("/api/stations", params=params)
                assert page.status_code == 200
                pages.append([view["state"]["station"] for view in page.json()])
                cursor = page.headers.get("Next-Cursor")
                if cursor is None:
                    assert "Link" not in page.headers
                    break
                assert len(pages[-1]) == 3
                link = page.headers["Link"]
                assert link.endswith('>; rel="next"') and "registered=true" in link
                followed = await http.get(link[1 : link.index(">")])
                params = {**params, "after": cursor}
                assert followed.json() == (await http.get("/api/stations", params=params)).json()
            assert [s for page in pages for s in page] == [
                v["state"]["station"] for v in everything
            ]
            assert 1 <= len(pages[-1]) <= 3

            # The cursor names a place in id order, not a row: removing its station is fine.
            params = {"registered": "true", "limit": 1}
            page = await http.get("/api/stations", params=params)
            while page.json()[0]["state"]["station"] != "PAGE-3":
                params = {**params, "after": page.headers["Next-Cursor"]}
                page = await http.get("/api/stations", params=params)
            assert (await http.delete("/api/stations/PAGE-3/registration")).status_code == 204
            rest = await http.get(
                "/api/stations",
                params={"registered": "true", "after": page.headers["Next-Cursor"]},
            )
            after_gone = [view["state"]["station"] for view in rest.json()]
            assert after_gone[:3] == ["PAGE-4", "PAGE-5", "PAGE-6"]

            for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "ten"}):
                problem(await http.get("/api/stations", params=bad), 400, "bad-request")
            for cursor in ("", "%%%", "UEFHRS0x=", "not a cursor"):
                answer = problem(
                    await http.get("/api/stations", params={"after": cursor}), 400, "bad-request"
                )
                assert "Next-Cursor" in answer["detail"]

            # Leave the registry as found (the other tests count registered stations).
            for n in (0, 1, 2, 4, 5, 6):
                deleted = await http.delete(f"/api/stations/PAGE-{n}/registration")
                assert deleted.status_code == 204

    asyncio.run(scenario())


def test_registration(api: Api) -> None:
    async def scenario() -> None:
        async with api.client("admin") as admin:
            response = await admin.put(
                "/api/stations/REG-1/registration", json={"description": "bay 4, garage B"}
            )
            assert response.status_code == 200, response.text
            registration = response.json()
            assert registration["station"] == "REG-1" and registration["by"] == "admin"
            assert registration["description"] == "bay 4, garage B"

            # Registered but never seen: listed with the default state.
            detail = (await admin.get("/api/stations/REG-1")).json()
            assert detail["registration"] == registration
            assert detail["state"]["connected"] is False and detail["state"]["boot"] is None
            registered = await admin.get("/api/stations", params={"registered": "true"})
            assert [v["state"]["station"] for v in registered.json()] == ["REG-1"]
            unregistered = await admin.get("/api/stations", params={"registered": "false"})
            assert "REG-1" not in [v["state"]["station"] for v in unregistered.json()]

            problem(
                await admin.put("/api/stations/REG-1/registration", json={"colour": "red"}),
                400,
                "bad-request",
            )
            assert (await admin.delete("/api/stations/REG-1/registration")).status_code == 204
            problem(await admin.delete("/api/stations/REG-1/registration"), 404, "not-found")
            problem(await admin.get("/api/stations/REG-1"), 404, "not-found")

            kinds = (await admin.get("/api/events", params={"station": "REG-1"})).json()
            assert [item["kind"] for item in kinds["items"]] == [
                "StationRegistered",
                "StationDeregistered",
            ]
            assert all(item["event"]["key"] == "admin" for item in kinds["items"])

    asyncio.run(scenario())


def test_transactions_and_charge_detail_records(api: Api) -> None:
    async def scenario() -> None:
        async with station(api, "BILL-1") as cp:
            for n in range(3):
                await charge(cp, f"TAG-{n}", 1000 * n, 1000 * n + 500)
            # An active one, and a stop repeated (duplicate_stop) on the last ended one.
            stop = await charge(cp, "TAG-3", 0, 100)
            await cp.call(call.StopTransaction(**stop), suppress=False)
            await cp.call(
                call.StartTransaction(
                    connector_id=2, id_tag="TAG-4", meter_start=7, timestamp="2026-11-21T12:00:00Z"
                ),
                suppress=False,
            )
        async with api.client("read") as http:
            pages, after = [], 0
            while True:
                params: dict[str, str | int] = {"station": "BILL-1", "limit": 2, "after": after}
                page = (await http.get("/api/transactions", params=params)).json()
                pages.append(page["items"])
                if page["next"] is None:
                    break
                after = page["next"]
            assert [len(p) for p in pages] == [2, 2, 1]
            everything = [t for p in pages for t in p]
            assert [t["id_tag"] for t in everything] == [f"TAG-{n}" for n in range(5)]
            positions = [t["started_position"] for t in everything]
            assert positions == sorted(positions)

            active = await http.get(
                "/api/transactions", params={"station": "BILL-1", "status": "active"}
            )
            assert [t["id_tag"] for t in active.json()["items"]] == ["TAG-4"]
            incomplete = await http.get(
                "/api/transactions", params={"station": "BILL-1", "complete": "false"}
            )
            assert [t["id_tag"] for t in incomplete.json()["items"]] == ["TAG-4"]
            started = everything[0]["started_at"]
            future = await http.get(
                "/api/transactions", params={"station": "BILL-1", "since": "2100-01-01T00:00:00Z"}
            )
            assert future.json()["items"] == []
            window = await http.get(
                "/api/transactions",
                params={
                    "station": "BILL-1",
                    "since": _rfc3339(started - 60),
                    "until": _rfc3339(time.time() + 60),
                },
            )
            assert len(window.json()["items"]) == 5
            problem(
                await http.get("/api/transactions", params={"status": "paused"}), 400, "bad-request"
            )
            problem(await http.get("/api/transactions", params={"limit": 0}), 400, "bad-request")

            first = (
                await http.get("/api/billing/cdrs", params={"station": "BILL-1", "limit": 3})
            ).json()
            rest = (
                await http.get(
                    "/api/billing/cdrs", params={"station": "BILL-1", "after": first["next"]}
                )
            ).json()
            assert rest["next"] is None
            cdrs = first["items"] + rest["items"]
            assert [c["id_token"] for c in cdrs] == ["TAG-0", "TAG-1", "TAG-2", "TAG-3"]
            cursors = [c["cursor"] for c in cdrs]
            assert cursors == sorted(cursors) and len(set(cursors)) == 4
            cdr = cdrs[1]
            assert cdr["station"] == "BILL-1" and cdr["connector_id"] == 1
            assert cdr["meter_start_wh"] == 1000 and cdr["meter_stop_wh"] == 1500
            assert cdr["energy_wh"] == 500 and cdr["complete"] is True
            assert cdr["stop_reason"] == "Local", "1.6 default when the station sent none"
            assert cdr["start_time"] == "2026-11-21T10:00:00Z"
            assert cdr["stop_time"] == "2026-11-21T11:00:00Z"
            assert len(cdr["positions"]) == 4 and cdr["cursor"] == cdr["positions"][-1]
            assert cdrs[3]["anomalies"] == ["duplicate_stop"]

            # The positions are the frames it was derived from.
            for position in cdr["positions"]:
                events = await http.get("/api/events", params={"after": position - 1, "limit": 1})
                (event,) = events.json()["items"]
                assert event["position"] == position and event["kind"] == "FrameLogged"
                assert event["event"]["station"] == "BILL-1"

            exported = await http.get("/api/billing/cdrs.csv", params={"station": "BILL-1"})
            assert exported.status_code == 200
            assert exported.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(exported.text)))
            assert [row["id_token"] for row in rows] == ["TAG-0", "TAG-1", "TAG-2", "TAG-3"]
            assert rows[1]["energy_wh"] == "500.0" and rows[1]["complete"] == "true"
            assert rows[1]["evse_id"] == ""
            assert rows[1]["positions"] == " ".join(map(str, cdr["positions"]))
            assert rows[3]["anomalies"] == "duplicate_stop"
            # Our times: UNIX seconds in JSON (documented), RFC 3339 UTC in CSV.
            for field in ("started_at", "ended_at"):
                assert isinstance(cdr[field], float)
                assert rows[1][field] == rfc3339(cdr[field], 6)
                parsed = datetime.fromisoformat(rows[1][field])
                assert parsed.tzinfo is not None and rows[1][field].endswith("Z")
                assert abs(parsed.timestamp() - cdr[field]) < 1e-5
            late = await http.get(
                "/api/billing/cdrs.csv", params={"station": "BILL-1", "after": cursors[-1]}
            )
            assert late.text.splitlines() == [late.text.splitlines()[0]], "header only"

    asyncio.run(scenario())


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def test_event_log(api: Api) -> None:
    async def scenario() -> None:
        before = time.time()
        async with station(api, "LOG-1") as cp:
            for _ in range(3):
                await cp.call(call.Heartbeat(), suppress=False)
        assert api.server.csms is not None
        async with api.client("read") as http:
            items, after = [], 0
            while True:
                page = (
                    await http.get(
                        "/api/events", params={"station": "LOG-1", "after": after, "limit": 3}
                    )
                ).json()
                items += page["items"]
                if page["next"] is None:
                    break
                after = page["next"]
            kinds = [item["kind"] for item in items]
            assert kinds[0] == "SessionOpened" and kinds[-1] == "SessionClosed"
            assert kinds.count("FrameLogged") == 8, "boot and 3 heartbeats, each way"
            positions = [item["position"] for item in items]
            assert positions == sorted(positions) and len(set(positions)) == len(positions)
            # Verbatim: each frame's text is exactly what the store holds.
            stored = {r.position: r for r in api.server.csms.store.iter_all()}
            for item in items:
                recorded = stored[item["position"]]
                assert item["stream"] == recorded.stream and item["version"] == recorded.version
                assert item["event"] == msgspec.to_builtins(recorded.event)
            frames = [item for item in items if item["kind"] == "FrameLogged"]
            assert json.loads(frames[0]["event"]["text"])[2] == "BootNotification"

            only = await http.get(
                "/api/events",
                params={"station": "LOG-1", "kind": ["SessionOpened", "SessionClosed"]},
            )
            assert [i["kind"] for i in only.json()["items"]] == ["SessionOpened", "SessionClosed"]
            window = await http.get(
                "/api/events",
                params={
                    "station": "LOG-1",
                    "since": _rfc3339(before - 1),
                    "until": _rfc3339(time.time() + 1),
                    "limit": 1000,
                },
            )
            assert [i["position"] for i in window.json()["items"]] == positions
            empty = await http.get(
                "/api/events", params={"station": "LOG-1", "until": _rfc3339(before - 3600)}
            )
            assert empty.json() == {"items": [], "next": None}
            problem(await http.get("/api/events", params={"kind": "Nope"}), 400, "bad-request")
            problem(
                await http.get("/api/events", params={"since": "yesterday"}), 400, "bad-request"
            )

    asyncio.run(scenario())


# -- commands ------------------------------------------------------------------------------


USE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"use_case": "remote_start", "id_token": "TAG-API", "connector_id": 1}, "Accepted"),
    ({"use_case": "remote_stop", "transaction_id": 12}, "Accepted"),
    ({"use_case": "reset", "kind": "hard"}, "Accepted"),
    ({"use_case": "change_availability", "operative": False, "connector_id": 1}, "Accepted"),
    ({"use_case": "unlock_connector", "connector_id": 1}, "Unlocked"),
    ({"use_case": "read_configuration", "keys": ["HeartbeatInterval"]}, "Accepted"),
    ({"use_case": "change_configuration", "key": "HeartbeatInterval", "value": "60"}, "Accepted"),
    ({"use_case": "trigger_message", "message": "Heartbeat"}, "Accepted"),
    ({"use_case": "clear_cache"}, "Accepted"),
    ({"use_case": "data_transfer", "vendor_id": "com.example"}, "Rejected"),
]


def test_use_cases_reach_a_real_16_charge_point(api: Api) -> None:
    async def scenario() -> Recorder:
        async with station(api, "CMD-1") as cp, api.client("operator") as http:
            for body, status in USE_CASES:
                response = await http.post("/api/stations/CMD-1/commands", json=body)
                assert response.status_code == 200, (body, response.text)
                result = response.json()
                assert result["status"] == status and result["protocol"] == "ocpp1.6", body
                assert response.headers["x-request-id"]
            read = await http.post(
                "/api/stations/CMD-1/commands", json={"use_case": "read_configuration"}
            )
            assert read.json()["values"]["HeartbeatInterval"] == "60"
            return cp

    cp = asyncio.run(scenario())
    assert cp.remote_starts == [{"id_tag": "TAG-API", "connector_id": 1}]
    recorded = commands_of(api, "CMD-1")
    assert [c.command for c in recorded] == [b["use_case"] for b, _ in USE_CASES] + [
        "read_configuration"
    ]
    first = recorded[0]
    assert first.key == "operator" and first.role == "operator" and first.mode == "use_case"
    assert first.payload == USE_CASES[0][0] and first.node == "api-node"


def test_command_is_recorded_before_it_is_sent(api: Api) -> None:
    async def scenario() -> None:
        async with station(api, "CMD-2"), api.client("operator") as http:
            response = await http.post("/api/stations/CMD-2/calls/ClearCache", json={})
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
        async with api.client("read") as http:
            page = await http.get(
                "/api/events",
                params={"station": "CMD-2", "kind": ["CommandRequested", "FrameLogged"]},
            )
        items = page.json()["items"]
        (command,) = [i for i in items if i["kind"] == "CommandRequested"]
        assert command["stream"] == f"command:{request_id}"
        assert command["event"]["mode"] == "message" and command["event"]["command"] == "ClearCache"
        (sent,) = [
            i for i in items if i["kind"] == "FrameLogged" and '"ClearCache"' in i["event"]["text"]
        ]
        assert command["position"] < sent["position"], "who asked is in the log before the CALL"

    asyncio.run(scenario())


def test_message_mode_and_its_error_statuses(api: Api) -> None:
    async def scenario() -> None:
        async with station(api, "MSG-1"), api.client("operator") as http:
            ok = await http.post(
                "/api/stations/MSG-1/calls/TriggerMessage", json={"requestedMessage": "Heartbeat"}
            )
            assert ok.status_code == 200 and ok.json() == {"status": "Accepted"}

            invalid = await http.post(
                "/api/stations/MSG-1/calls/TriggerMessage", json={"requestedMessage": "Coffee"}
            )
            body = problem(invalid, 422, "invalid-payload")
            assert body["action"] == "TriggerMessage" and body["protocol"] == "ocpp1.6"
            assert body["request_id"] and body["station"] == "MSG-1"

            # A 2.0.1 action does not exist for a 1.6 station.
            unknown = await http.post(
                "/api/stations/MSG-1/calls/RequestStartTransaction",
                json={"idToken": {"idToken": "X", "type": "ISO14443"}, "remoteStartId": 1},
            )
            problem(unknown, 404, "unknown-action")

            # The ocpp package answers actions it has no handler for with a CALLERROR.
            refused = await http.post(
                "/api/stations/MSG-1/calls/GetDiagnostics", json={"location": "ftp://x/"}
            )
            body = problem(refused, 502, "call-error")
            assert body["code"] == "NotImplemented"

            not_json = await http.post(
                "/api/stations/MSG-1/calls/ClearCache",
                content=b"{not json",
                headers={"content-type": "application/json"},
            )
            problem(not_json, 400, "bad-request")
            problem(
                await http.post("/api/stations/MSG-1/commands", json={"use_case": "teleport"}),
                400,
                "bad-request",
            )
            problem(
                await http.post(
                    "/api/stations/MSG-1/commands", json={"use_case": "reset", "evse_id": 1}
                ),
                501,
                "unsupported-use-case",
            )
            offline = await http.post(
                "/api/stations/GHOST/commands", json={"use_case": "clear_cache"}
            )
            assert problem(offline, 409, "station-offline")["request_id"]

        # A station that never answers: 504 after call_timeout; behind its one in-flight
        # call the queue holds one more; a third is refused at once.
        silent = await raw_station(api.server.url, "SILENT-1", ["ocpp1.6"])
        try:
            async with api.client("operator") as http:
                responses = await asyncio.gather(
                    *(
                        http.post("/api/stations/SILENT-1/calls/ClearCache", json={})
                        for _ in range(3)
                    )
                )
        finally:
            await silent.close()
        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 503 and statuses[-1] == 504, statuses
        busy = next(r for r in responses if r.status_code == 503)
        problem(busy, 503, "station-busy")
        assert busy.headers["retry-after"] == "1"
        problem(next(r for r in responses if r.status_code == 504), 504, "call-timeout")

    asyncio.run(scenario())
    assert {c.command for c in commands_of(api, "SILENT-1")} == {"ClearCache"}


# -- authentication and roles --------------------------------------------------------------


ROUTES_BY_ROLE: list[tuple[str, str, dict[str, Any] | None, str, int]] = [
    # method, path, body, the role it needs, its status for that role (station ANY is offline
    # and unregistered until the admin's PUT)
    ("GET", "/api/stations", None, "read", 200),
    ("GET", "/api/stations/ANY", None, "read", 404),
    ("GET", "/api/transactions", None, "read", 200),
    ("GET", "/api/events", None, "read", 200),
    ("GET", "/api/billing/cdrs", None, "read", 200),
    ("GET", "/api/billing/cdrs.csv", None, "read", 200),
    ("GET", "/metrics", None, "read", 200),
    ("POST", "/api/stations/ANY/commands", {"use_case": "clear_cache"}, "operator", 409),
    ("POST", "/api/stations/ANY/calls/ClearCache", {}, "operator", 409),
    ("PUT", "/api/stations/ANY/registration", {}, "admin", 200),
    ("POST", "/api/stations/ANY/password", {}, "admin", 200),
    ("DELETE", "/api/stations/ANY/registration", None, "admin", 204),
]


def test_authentication_and_roles(api: Api) -> None:
    rank: dict[str, int] = {role: n for n, role in enumerate(ROLES)}

    async def scenario() -> None:
        async with api.client(None) as anonymous:
            for method, path, body, _, _ in ROUTES_BY_ROLE:
                response = await anonymous.request(method, path, json=body)
                problem(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer"
            wrong = await anonymous.get("/api/stations", headers={"Authorization": "Bearer nope"})
            assert problem(wrong, 401, "unauthorized")["detail"] == "unknown API key"
            basic = await anonymous.get(
                "/api/stations", headers={"Authorization": f"Basic {api.keys['admin']}"}
            )
            problem(basic, 401, "unauthorized")
            # Public: probes and the API's own documentation.
            assert (await anonymous.get("/health/live")).json() == {"status": "ok"}
            assert (await anonymous.get("/health/ready")).status_code == 200
            assert (await anonymous.get("/api/schema/openapi.json")).status_code == 200

        for role in ROLES:
            async with api.client(role) as http:
                for method, path, body, needed, status in ROUTES_BY_ROLE:
                    response = await http.request(method, path, json=body)
                    if rank[role] < rank[needed]:
                        body_ = problem(response, 403, "forbidden")
                        assert needed in body_["detail"]
                    else:
                        assert response.status_code == status, (role, path, response.text)

    asyncio.run(scenario())
    # Every command that got past authorization is recorded with its author, and only those.
    authors = {(c.key, c.role) for c in commands_of(api, "ANY")}
    assert authors == {("operator", "operator"), ("admin", "admin")}


def _exchange(
    sock: socket.socket, client: h11.Connection, request: h11.Request, body: bytes | None
) -> tuple[h11.Response, bytes]:
    """Send ``request`` (and ``body``, unless None: held back) on ``sock``; the response."""
    sock.sendall(client.send(request))
    if body is not None:
        sock.sendall(client.send(h11.Data(data=body)) + client.send(h11.EndOfMessage()))
    response, received = None, b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            received += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response, received


def test_a_response_sent_before_the_body_arrived_announces_the_close(api: Api) -> None:
    """Regression for the keep-alive failure of ``test_authentication_and_roles``
    (docs/testing.md): Hypercorn closes a connection whose response ended before the request
    body arrived; the response must say so, or the client reuses a dead connection."""
    assert api.server.csms is not None
    address = ("127.0.0.1", api.server.csms.api_port)
    body = b'{"use_case": "clear_cache"}'

    def post(station: str, auth: dict[str, str]) -> h11.Request:
        headers = {"host": "api", "content-length": str(len(body)), **auth}
        return h11.Request(
            method="POST", target=f"/api/stations/{station}/commands", headers=list(headers.items())
        )

    with socket.create_connection(address, timeout=10) as sock:
        client = h11.Connection(h11.CLIENT)
        # Rejected from its headers alone, while its body has not even been sent.
        response, _ = _exchange(sock, client, post("KEEP", {}), body=None)
        assert response.status_code == 401
        assert (b"connection", b"close") in response.headers
    with socket.create_connection(address, timeout=10) as sock:
        client = h11.Connection(h11.CLIENT)
        # The body read (the station is offline: 409), the connection is kept and reused.
        response, _ = _exchange(sock, client, post("KEEP", api.auth("operator")), body)
        assert response.status_code == 409
        assert b"close" not in dict(response.headers).get(b"connection", b"")
        client.start_next_cycle()
        live = h11.Request(method="GET", target="/health/live", headers=[("host", "api")])
        response, received = _exchange(sock, client, live, body=b"")
        assert (response.status_code, json.loads(received)) == (200, {"status": "ok"})


def test_open_api_only_on_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        Settings(api_port=0, api_host="0.0.0.0")
    with pytest.raises(ValueError, match="not a loopback address"):
        load_settings(environ={"CHARGELEDGER_API_HOST": "::", "CHARGELEDGER_API_PORT": "8080"})
    key = ApiKey(name="ops", role="operator", sha256=hash_key("k"))
    assert Settings(api_port=0, api_host="0.0.0.0", api_keys=[key]).api_keys == [key]
    assert Settings(api_port=0, api_host="::1").api_host == "::1"
    assert Settings(api_port=0, api_host="localhost").api_host == "localhost"

    completed = subprocess.run(
        [
            *_cli(),
            "serve",
            "--store",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--port",
            "0",
            "--api-port",
            "0",
            "--api-host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "not a loopback address" in completed.stderr
    assert not (tmp_path / "x.db").exists(), "refused before opening anything"


def _cli() -> list[str]:
    return [sys.executable, "-m", "chargeledger.core.cli"]


def test_api_key_command_makes_a_working_key(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*_cli(), "api-key", "--name", "billing-system", "--role", "read"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    key = completed.stdout.split("it is not stored anywhere): ", 1)[1].split()[0]
    toml = completed.stdout[completed.stdout.index("[[api_keys]]") :]
    assert key not in toml
    config = tmp_path / "chargeledger.toml"
    config.write_text(f'api_port = 0\nport = 0\nstore = "memory://"\n\n{toml}')
    assert tomllib.loads(config.read_text())["api_keys"][0]["name"] == "billing-system"
    settings = load_settings(config, environ={})
    with running_server(settings) as server:
        api = Api(server, {"read": key})

        async def scenario() -> tuple[int, int]:
            async with api.client("read") as http:
                listed = await http.get("/api/stations")
                command = await http.post(
                    "/api/stations/X/commands", json={"use_case": "clear_cache"}
                )
                return listed.status_code, command.status_code

        assert asyncio.run(scenario()) == (200, 403)


def test_without_keys_loopback_callers_are_local_admins() -> None:
    with running_server(Settings(port=0, store="memory://", api_port=0)) as server:
        api = Api(server, {})

        async def scenario() -> None:
            async with api.client(None) as http:
                registered = await http.put("/api/stations/LOCAL-1/registration", json={})
                assert registered.status_code == 200
                assert registered.json()["by"] == "local"
                command = await http.post(
                    "/api/stations/LOCAL-1/commands", json={"use_case": "clear_cache"}
                )
                problem(command, 409, "station-offline")

        asyncio.run(scenario())
        (command,) = commands_of(api, "LOCAL-1")
        assert (command.key, command.role) == ("local", "admin")

        # Readiness follows the store: closed under the server, it is not ready.
        assert server.csms is not None
        server.csms.store.close()

        async def probe() -> httpx.Response:
            async with api.client(None) as http:
                return await http.get("/health/ready")

        problem(asyncio.run(probe()), 503, "store-unavailable")


# -- health --------------------------------------------------------------------------------


def test_health_and_metrics(api: Api) -> None:
    async def scenario() -> str:
        async with station(api, "MET-1") as cp, api.client("read") as http:
            await cp.call(call.Heartbeat(), suppress=False)
            ready = (await http.get("/health/ready")).json()
            assert ready["ready"] is True and ready["position"] > 0
            response = await http.get("/metrics")
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            openmetrics = await http.get(
                "/metrics", headers={"Accept": "application/openmetrics-text"}
            )
            assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
            assert openmetrics.text.rstrip().endswith("# EOF")
            return response.text

    text = asyncio.run(scenario())
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["chargeledger_connected_stations"] >= 1
    assert samples['chargeledger_frames_total{direction="in"}'] >= 2
    assert samples['chargeledger_frames_total{direction="out"}'] >= 2
    assert samples["chargeledger_commit_batch_size_count"] >= 1
    assert (
        samples["chargeledger_commit_batch_size_sum"]
        >= samples["chargeledger_commit_batch_size_count"]
    )
    assert samples["chargeledger_commit_seconds_sum"] > 0
    for name in (
        "chargeledger_outstanding_calls",
        "chargeledger_call_timeouts_total",
        "chargeledger_commit_failures_total",
        "chargeledger_commit_last_seconds",
        "chargeledger_log_position",
    ):
        assert name in samples, name


# -- OCPP 2.0.1 ----------------------------------------------------------------------------


def test_remote_start_reaches_a_real_201_charging_station(api: Api) -> None:
    """The very request of the 1.6 test, to a 2.0.1 station: RequestStartTransaction."""

    class Station201(ChargePoint201):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.requests: list[dict[str, Any]] = []

        @on("RequestStartTransaction")
        def on_start(self, id_token: dict[str, Any], remote_start_id: int, **rest: Any) -> Any:
            self.requests.append({"id_token": id_token, **rest})
            return result201.RequestStartTransaction(status="Accepted")

    async def scenario() -> tuple[httpx.Response, Station201]:
        ws = await websockets.connect(
            f"{api.server.url}/V201-1", subprotocols=[websockets.Subprotocol("ocpp2.0.1")]
        )
        cp = Station201("V201-1", ws)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(
                call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
                ),
                suppress=False,
            )
            async with api.client("operator") as http:
                body = USE_CASES[0][0]
                return await http.post("/api/stations/V201-1/commands", json=body), cp
        finally:
            task.cancel()
            await ws.close()

    response, cp = asyncio.run(scenario())
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["protocol"] == "ocpp2.0.1" and result["action"] == "RequestStartTransaction"
    assert result["accepted"] is True
    (request,) = cp.requests
    assert request["id_token"]["id_token"] == "TAG-API" and request["evse_id"] == 1
    (command,) = commands_of(api, "V201-1")
    assert command.payload == USE_CASES[0][0]
