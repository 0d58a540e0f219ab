"""The ID-token registry and the authorization decisions made from it: the decision rules on
hand-built logs, end to end with the ``ocpp`` package's 1.6 and 2.0.1 charge points, the
HTTP API, the CLI (through the API and on a store) and the CSV import."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from chargeledger.core.events import CommandRequested, FrameLogged, TokenRegistered, TokenRemoved
from chargeledger.core.http.keys import new_key
from chargeledger.core.settings import Settings
from chargeledger.core.store import open_store
from chargeledger.core.times import rfc3339
from chargeledger.core.tokens import TokenRequest, read_csv
from chargeledger.plugins import authorization
from chargeledger.projections import Views
from chargeledger.schemas.v201 import IdTokenType
from tests import test_e2e_v16, test_e2e_v201
from tests.harness import RunningServer, running_server
from tests.polling import wait_for
from tests.test_http_api import ROLES, Api, api_settings
from tests.test_projections import Log

__all__: list[str] = []

AT = 1_800_000_000.0
"""The CALL's time in the decision tests (2027-01-15T08:00:00Z)."""


def registered(*tokens: TokenRequest, log: Log | None = None) -> tuple[Views, Log]:
    """Views of a log holding ``tokens``' registrations (after ``log``'s events)."""
    log = log or Log()
    for n, token in enumerate(tokens):
        log.add(TokenRegistered(request_id=f"r{n}", at=AT - 100, key="k", **_fields(token)))
    return Views.replay(log.records), log


def _fields(token: TokenRequest) -> dict[str, Any]:
    return msgspec.structs.asdict(token)


def test_unknown_tokens_are_rejected_once_any_is_registered() -> None:
    empty = Views()
    assert authorization.id_tag_info("X", Settings(), AT, empty) == {"status": "Accepted"}
    views, _ = registered(TokenRequest(id_token="A"))
    assert authorization.id_tag_info("X", Settings(), AT, views) == {"status": "Invalid"}
    token = IdTokenType(id_token="X", type="ISO14443")
    assert authorization.id_token_info(token, Settings(), AT, views) == {"status": "Unknown"}
    open_site = Settings(unknown_tokens="accept")
    assert authorization.id_tag_info("X", open_site, AT, views) == {"status": "Accepted"}
    closed = Settings(unknown_tokens="reject")
    assert authorization.id_tag_info("X", closed, AT, empty) == {"status": "Invalid"}
    # The seed lists keep answering for the tokens they name, the registry wins over them.
    seeded = Settings(plugins={"authorization": {"known": ["S"], "blocked": ["A"]}})
    assert authorization.id_tag_info("S", seeded, AT, views)["status"] == "Accepted"
    assert authorization.id_tag_info("A", seeded, AT, views)["status"] == "Accepted"
    assert authorization.id_tag_info("X", seeded, AT, empty)["status"] == "Invalid"


def test_registered_status_case_and_type() -> None:
    views, _ = registered(
        TokenRequest(id_token="Card-1", status="Blocked"),
        TokenRequest(id_token="APP", type="Central"),
    )
    assert authorization.id_tag_info("card-1", Settings(), AT, views) == {"status": "Blocked"}
    # A 1.6 idTag matches any type; a 2.0.1 token only its own.
    assert authorization.id_tag_info("app", Settings(), AT, views) == {"status": "Accepted"}
    central = IdTokenType(id_token="APP", type="Central")
    assert authorization.id_token_info(central, Settings(), AT, views)["status"] == "Accepted"
    rfid = IdTokenType(id_token="APP", type="ISO14443")
    assert authorization.id_token_info(rfid, Settings(), AT, views)["status"] == "Unknown"


def test_expiry_is_judged_at_the_calls_time_and_bounds_the_cache() -> None:
    expiry = rfc3339(AT + 60)
    views, _ = registered(TokenRequest(id_token="T", expiry=expiry))
    assert authorization.id_tag_info("T", Settings(), AT, views) == {
        "status": "Accepted",
        "expiryDate": expiry,
    }
    assert authorization.id_tag_info("T", Settings(), AT + 60, views) == {"status": "Expired"}
    # The maximum: the earlier of it and the token's expiry, from the CALL's time.
    capped = Settings(authorization_cache_max_seconds=30)
    assert authorization.id_tag_info("T", capped, AT, views)["expiryDate"] == rfc3339(AT + 30)
    roomy = Settings(authorization_cache_max_seconds=3600)
    assert authorization.id_tag_info("T", roomy, AT, views)["expiryDate"] == expiry
    token = IdTokenType(id_token="T", type="ISO14443")
    info = authorization.id_token_info(token, capped, AT, views)
    assert info == {"status": "Accepted", "cacheExpiryDateTime": rfc3339(AT + 30)}


def test_group_is_sent_with_its_registered_type() -> None:
    views, _ = registered(
        TokenRequest(id_token="FLEET", type="Central"),
        TokenRequest(id_token="D1", group="FLEET"),
        TokenRequest(id_token="D2", group="OTHER"),
    )
    assert authorization.id_tag_info("D1", Settings(), AT, views)["parentIdTag"] == "FLEET"
    d1 = authorization.id_token_info(
        IdTokenType(id_token="D1", type="ISO14443"), Settings(), AT, views
    )
    assert d1["groupIdToken"] == {"idToken": "FLEET", "type": "Central"}
    d2 = authorization.id_token_info(
        IdTokenType(id_token="D2", type="ISO14443"), Settings(), AT, views
    )
    assert d2["groupIdToken"] == {"idToken": "OTHER", "type": "Central"}
    assert [state.id_token for state in views.tokens.groups()["FLEET"]] == ["D1"]


def _started(log: Log, station: str, connector: int, tag: str, transaction_id: int) -> None:
    log.open(station)
    start = {"connectorId": connector, "idTag": tag, "timestamp": "t", "meterStart": 0}
    result = {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
    log.call(station, "StartTransaction", start, result)


def test_concurrent_limit_counts_running_transactions_but_never_refuses_a_stop() -> None:
    log = Log()
    _started(log, "CP1", 1, "card", 1)
    views, log = registered(TokenRequest(id_token="CARD", max_concurrent=1), log=log)
    assert authorization.id_tag_info("CARD", Settings(), AT, views)["status"] == "ConcurrentTx"
    # Its own transaction (a retransmitted start) does not count; nor is a stop refused.
    own = authorization.id_tag_info("CARD", Settings(), AT, views, current=("CP1", 1))
    assert own["status"] == "Accepted"
    stop = authorization.id_tag_info("CARD", Settings(), AT, views, limit=False)
    assert stop["status"] == "Accepted"
    log.call("CP1", "StopTransaction", {"transactionId": 1, "meterStop": 5, "timestamp": "t"}, {})
    views = Views.replay(log.records)
    assert authorization.id_tag_info("CARD", Settings(), AT, views)["status"] == "Accepted"
    # A transaction we refused, that the station runs anyway, takes no place.
    start = {"connectorId": 2, "idTag": "CARD", "timestamp": "t", "meterStart": 0}
    refused = {"transactionId": 2, "idTagInfo": {"status": "ConcurrentTx"}}
    log.call("CP1", "StartTransaction", start, refused)
    views = Views.replay(log.records)
    assert len(authorization.running_transactions(views, _some(views.tokens.get("CARD"))))
    assert authorization.id_tag_info("CARD", Settings(), AT, views)["status"] == "Accepted"


def _some(value: Any) -> Any:
    assert value is not None
    return value


def test_removed_token_is_unknown_again() -> None:
    views, log = registered(TokenRequest(id_token="A"), TokenRequest(id_token="B"))
    log.add(TokenRemoved(request_id="x", at=AT, key="k", id_token="a", type="ISO14443"))
    views = Views.replay(log.records)
    assert views.tokens.get("A") is None and len(views.tokens) == 1
    assert authorization.id_tag_info("A", Settings(), AT, views) == {"status": "Invalid"}


def test_csv_import_format(tmp_path: Path) -> None:
    text = (
        "id_token,status,group,max_concurrent,expiry\nA,,,,\nB,Blocked,G,2,2027-01-01T00:00:00Z\n"
    )
    a, b = read_csv(text)
    assert a == TokenRequest(id_token="A")
    assert b == TokenRequest(
        id_token="B", status="Blocked", group="G", max_concurrent=2, expiry="2027-01-01T00:00:00Z"
    )
    for bad, message in (
        ("token\nA\n", "expected columns"),
        ("id_token,status\nA,Stolen\n", "line 2"),
        ("id_token,max_concurrent\nA,many\n", "line 2"),
        ("id_token,expiry\nA,tomorrow\n", "line 2"),
        ("id_token,type\nA,Magic\n", "line 2"),
        ("id_token\nA,B\n", "line 2"),
    ):
        with pytest.raises(ValueError, match=message):
            read_csv(bad)


# -------------------------------------------------------------------------
# End to end
# -------------------------------------------------------------------------


def _events(store: str, kind: type[Any]) -> list[Any]:
    opened = open_store(store)
    try:
        return [r.event for r in opened.iter_all() if isinstance(r.event, kind)]
    finally:
        opened.close()


TOKENS = [
    TokenRequest(id_token="GOOD", group="FLEET", max_concurrent=1),
    TokenRequest(id_token="STOLEN", status="Blocked"),
    TokenRequest(id_token="OLD", expiry="2020-01-01T00:00:00Z"),
    TokenRequest(id_token="FLEET", type="Central"),
]


def test_v16_charge_point_end_to_end(server_store: str, tmp_path: Path) -> None:
    settings = Settings(
        port=0,
        store=server_store,
        authorization_cache_max_seconds=600,
        blocked_while_charging="remote_stop",
    )

    async def scenario(server: RunningServer) -> dict[str, Any]:
        csms = server.csms
        assert csms is not None
        await server.arun(csms.register_tokens, TOKENS)
        cp, ws, task = await test_e2e_v16.connect(server, "CP-A")
        facts: dict[str, Any] = {"since": time.time()}
        try:
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            for tag in ("GOOD", "good", "STOLEN", "OLD", "NOBODY"):
                facts[tag] = (await cp.call(call16.Authorize(id_tag=tag))).id_tag_info
            start = {"meter_start": 0, "timestamp": "2026-11-21T10:00:00Z", "id_tag": "GOOD"}
            first = await cp.call(call16.StartTransaction(connector_id=1, **start))
            facts["first"] = first.id_tag_info
            second = await cp.call(call16.StartTransaction(connector_id=2, **start))
            facts["second"] = second.id_tag_info
            stop = call16.StopTransaction(
                meter_stop=10,
                timestamp="2026-11-21T11:00:00Z",
                transaction_id=second.transaction_id,
                id_tag="GOOD",
            )
            facts["stop"] = (await cp.call(stop)).id_tag_info
            # Blocked while charging: the CSMS stops the running transaction itself.
            blocked = TokenRequest(id_token="GOOD", status="Blocked", group="FLEET")
            await server.arun(csms.register_tokens, [blocked])
            facts["running"] = first.transaction_id
        finally:
            await asyncio.sleep(0)
            facts["remote_stops"] = await asyncio.to_thread(
                wait_for,
                lambda: [
                    e
                    for e in _events(server_store, CommandRequested)
                    if e.command == "RemoteStopTransaction"
                ],
                what="the remote stop of the blocked token's transaction",
            )
            task.cancel()
            await ws.close()
        return facts

    with running_server(settings) as server:
        facts = asyncio.run(scenario(server))
    good = facts["GOOD"]
    assert good["status"] == "Accepted" and good["parent_id_tag"] == "FLEET"
    # The cache maximum, counted from the CALL's time.
    assert facts["since"] - 1 < _seconds(good["expiry_date"]) - 600 < facts["since"] + 60
    assert facts["good"]["status"] == "Accepted"
    assert facts["STOLEN"]["status"] == "Blocked"
    assert facts["OLD"]["status"] == "Expired"
    assert facts["NOBODY"]["status"] == "Invalid"
    assert facts["first"]["status"] == "Accepted"
    assert facts["second"]["status"] == "ConcurrentTx"
    assert facts["stop"]["status"] == "Accepted"
    (remote_stop,) = facts["remote_stops"]
    assert remote_stop.station == "CP-A" and remote_stop.key == "plugins"
    assert remote_stop.payload == {"transactionId": facts["running"]}
    registrations = _events(server_store, TokenRegistered)
    assert [e.id_token for e in registrations] == ["GOOD", "STOLEN", "OLD", "FLEET", "GOOD"]
    assert {e.key for e in registrations} == {"python"}
    # Replayed, today's rules answer every CALL as it was answered: the registry, the
    # transactions and the CALL's time are all in the log.
    config = tmp_path / "settings.toml"
    config.write_text(
        'authorization_cache_max_seconds = 600\nblocked_while_charging = "remote_stop"\n'
    )
    command = ["replay", "--what-if", "--store", server_store, "--config", str(config)]
    replay = subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "0 answered differently today" in replay.stdout + replay.stderr


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_v201_station_end_to_end(server_store: str) -> None:
    settings = Settings(port=0, store=server_store)

    async def scenario(server: RunningServer) -> dict[str, Any]:
        csms = server.csms
        assert csms is not None
        await server.arun(csms.register_tokens, TOKENS)
        cp, ws, task = await test_e2e_v201.connect(server, "CP-B")
        facts: dict[str, Any] = {}
        try:
            assert await cp.boot() == "Accepted"
            for name, kind in (
                ("GOOD", "ISO14443"),
                ("GOOD", "eMAID"),
                ("STOLEN", "ISO14443"),
                ("OLD", "ISO14443"),
                ("NOBODY", "ISO14443"),
                ("", "NoAuthorization"),
            ):
                answer = await cp.call(call201.Authorize(id_token={"id_token": name, "type": kind}))
                facts[f"{name}/{kind}"] = answer.id_token_info
            token = {"id_token": "GOOD", "type": "ISO14443"}
            for transaction in ("T1", "T2"):
                answer = await cp.call(
                    call201.TransactionEvent(
                        event_type="Started",
                        timestamp=test_e2e_v201.NOW,
                        trigger_reason="Authorized",
                        seq_no=0,
                        transaction_info={"transaction_id": transaction},
                        evse={"id": 1 if transaction == "T1" else 2, "connector_id": 1},
                        id_token=token,
                    )
                )
                facts[transaction] = answer.id_token_info
            # T1's own later events are not refused for the limit it fills itself.
            answer = await cp.call(
                call201.TransactionEvent(
                    event_type="Updated",
                    timestamp=test_e2e_v201.NOW,
                    trigger_reason="MeterValuePeriodic",
                    seq_no=1,
                    transaction_info={"transaction_id": "T1"},
                    id_token=token,
                )
            )
            facts["T1-updated"] = answer.id_token_info
        finally:
            task.cancel()
            await ws.close()
        return facts

    with running_server(settings) as server:
        facts = asyncio.run(scenario(server))
    assert facts["GOOD/ISO14443"] == {
        "status": "Accepted",
        "group_id_token": {"id_token": "FLEET", "type": "Central"},
    }
    assert facts["GOOD/eMAID"] == {"status": "Unknown"}
    assert facts["STOLEN/ISO14443"]["status"] == "Blocked"
    assert facts["OLD/ISO14443"]["status"] == "Expired"
    assert facts["NOBODY/ISO14443"]["status"] == "Unknown"
    assert facts["/NoAuthorization"] == {"status": "Accepted"}
    assert facts["T1"]["status"] == "Accepted"
    assert facts["T2"]["status"] == "ConcurrentTx"
    assert facts["T1-updated"]["status"] == "Accepted"


# -------------------------------------------------------------------------
# HTTP API and CLI
# -------------------------------------------------------------------------


@pytest.fixture
def api(server_store: str) -> Iterator[Api]:
    keys: dict[str, str] = {role: new_key() for role in ROLES}
    with running_server(api_settings(server_store, keys)) as server:
        yield Api(server, keys)


def test_api_manages_the_registry_with_roles_and_records_who(api: Api, server_store: str) -> None:
    async def scenario() -> None:
        async with api.client("operator") as operator, api.client("read") as reader:
            put = await operator.put("/api/tokens/CARD-1", json={"group": "G", "note": "van 3"})
            assert put.status_code == 200, put.text
            assert put.json()["id_token"] == "CARD-1" and put.json()["key"] == "operator"
            forbidden = await reader.put("/api/tokens/CARD-2", json={})
            assert forbidden.status_code == 403
            bad = await operator.put("/api/tokens/CARD-2", json={"status": "Stolen"})
            assert bad.status_code == 400
            bad = await operator.put("/api/tokens/CARD-2", json={"expiry": "soon"})
            assert bad.status_code == 400
            bulk = [{"id_token": "B1"}, {"id_token": "B2", "status": "Blocked"}]
            assert (await operator.post("/api/tokens", json=bulk)).status_code == 200
            # All or nothing: one invalid row records none.
            mixed = [{"id_token": "B3"}, {"id_token": "B4", "type": "Magic"}]
            assert (await operator.post("/api/tokens", json=mixed)).status_code == 400
            listed = (await reader.get("/api/tokens")).json()
            assert [t["id_token"] for t in listed] == ["B1", "B2", "CARD-1"]
            group = (await reader.get("/api/tokens", params={"group": "G"})).json()
            assert [t["id_token"] for t in group] == ["CARD-1"]
            one = await reader.get("/api/tokens/card-1")
            assert one.status_code == 200 and one.json()["note"] == "van 3"
            assert (await reader.get("/api/tokens/B3")).status_code == 404
            assert (await reader.get("/api/tokens/B1", params={"type": "eMAID"})).status_code == 404
            assert (await reader.delete("/api/tokens/B1")).status_code == 403
            assert (await operator.delete("/api/tokens/B1")).status_code == 204
            assert (await operator.delete("/api/tokens/B1")).status_code == 404

    asyncio.run(scenario())
    removed = _events(server_store, TokenRemoved)
    assert [(e.id_token, e.key) for e in removed] == [("B1", "operator")]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", "tokens", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        timeout=60,
    )


def test_cli_through_the_api(api: Api, tmp_path: Path, server_store: str) -> None:
    env = {"CHARGELEDGER_API_URL": api.base, "CHARGELEDGER_API_KEY": api.keys["operator"]}
    added = _cli("add", "CARD-1", "--group", "G", "--max-concurrent", "2", "--json", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["max_concurrent"] == 2
    updated = _cli("update", "card-1", "--note", "lost?", "--json", env=env)
    assert updated.returncode == 0, updated.stderr
    state = json.loads(updated.stdout)
    assert (state["note"], state["group"], state["max_concurrent"]) == ("lost?", "G", 2)
    blocked = _cli("block", "CARD-1", "--json", env=env)
    assert json.loads(blocked.stdout)["status"] == "Blocked"
    csv_file = tmp_path / "tokens.csv"
    csv_file.write_text("id_token,type,owner\nX1,ISO14443,ann\nX2,eMAID,bob\n")
    imported = _cli("import", str(csv_file), env=env)
    assert imported.returncode == 0, imported.stderr
    missing = _cli("update", "NOPE", "--note", "x", env=env)
    assert missing.returncode == 2 and "not registered" in missing.stderr
    reader = {**env, "CHARGELEDGER_API_KEY": api.keys["read"]}
    denied = _cli("add", "Y", env=reader)
    assert denied.returncode == 2 and "403" in denied.stderr
    listed = _cli("list", "--json", env=reader)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id_token"], r["status"]) for r in rows] == [
        ("CARD-1", "Blocked"),
        ("X1", "Accepted"),
        ("X2", "Accepted"),
    ]
    assert _cli("remove", "X2", env=env).returncode == 0
    assert _cli("remove", "X2", env=env).returncode == 2
    keys = {e.key for e in _events(server_store, TokenRegistered)}
    assert keys == {"operator"}


def test_cli_on_a_store_without_a_server(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tokens.db'}"
    csv_file = tmp_path / "tokens.csv"
    csv_file.write_text("id_token,status,group\nA,,G\nB,Blocked,G\n")
    assert _cli("import", str(csv_file), "--store", store, "--name", "ops").returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("id_token,status\nC,\nD,Stolen\n")
    failed = _cli("import", str(bad), "--store", store)
    assert failed.returncode == 2 and "line 3" in failed.stderr
    assert _cli("block", "a", "--store", store).returncode == 0
    assert _cli("remove", "B", "--store", store).returncode == 0
    listed = _cli("list", "--store", store, "--json")
    assert [json.loads(line)["status"] for line in listed.stdout.splitlines()] == ["Blocked"]
    # A server started on the store afterwards decides from what the CLI recorded.
    with running_server(Settings(port=0, store=store)) as server:
        assert server.csms is not None
        views = server.csms.views
        assert views.tokens.get("A") is not None and views.tokens.get("B") is None
        assert authorization.id_tag_info("A", Settings(), AT, views)["status"] == "Blocked"
    assert {e.key for e in _events(store, TokenRegistered)} == {"ops", "cli"}
    assert _events(store, FrameLogged) == []
