"""The one billing rule, seen from every surface: ``chargeledger transactions --json``, the HTTP
API's ``/api/transactions?complete=``, the charge detail records (JSON and CSV) and
``chargeledger audit`` agree on which transactions are billable, on a log with a 1.6 reused
transaction id and a 2.0.1 seqNo gap, imported and then served by a real server."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from chargeledger.core.http.keys import new_key
from chargeledger.projections import TransactionState
from chargeledger.projections.billing import (
    BILLING_DOUBTS,
    billing_doubts,
    charge_detail_record,
    is_billable,
)
from tests.harness import chargeledger_cli, running_server
from tests.test_audit import IncidentLog, chargeledger, json_lines
from tests.test_http_api import ROLES, api_settings

V16, V201 = "BILL-16", "BILL-201"
Key = tuple[str, int | str]

EXPECTED: dict[Key, bool] = {
    (V16, 1): True,
    (V16, 2): False,  # ended, energy known, but its id was issued to another start too
    (V16, 3): False,  # never ended
    (V201, "ok"): True,
    (V201, "gap"): False,  # ended, but seqNo 1 never arrived
}
"""Every transaction of the log, and whether it is billable as it stands."""
DOUBTS: dict[Key, list[str]] = {(V16, 2): ["transaction_id_reused"], (V201, "gap"): ["seq_no_gap"]}
"""The CDR ``doubts`` of the ended transactions that are not billable."""


def billing_log() -> IncidentLog:
    """A 1.6 station with a clean transaction, a reused id and one never ended; a 2.0.1 station
    with a clean transaction and one whose seqNo 1 is missing."""
    log = IncidentLog()
    accepted = {"status": "Accepted"}
    booted = {"status": "Accepted", "currentTime": "2024-05-01T10:00:00.000Z", "interval": 300}

    def start(at: str, message_id: str, transaction_id: int, tag: str, connector: int) -> None:
        request = {"connectorId": connector, "idTag": tag, "timestamp": at, "meterStart": 1000}
        answer = {"transactionId": transaction_id, "idTagInfo": accepted}
        log.exchange(at, message_id, "StartTransaction", request, answer, V16)

    def stop(at: str, message_id: str, transaction_id: int, meter_stop: int) -> None:
        request = {"transactionId": transaction_id, "meterStop": meter_stop, "timestamp": at}
        log.exchange(at, message_id, "StopTransaction", request, {}, V16)

    boot16 = {"chargePointVendor": "Acme", "chargePointModel": "EVC5"}
    log.exchange("2024-05-01T10:00:00Z", "b1", "BootNotification", boot16, booted, V16)
    start("2024-05-01T10:01:00Z", "s1", 1, "TAG-A", 1)
    stop("2024-05-01T10:30:00Z", "t1", 1, 3000)
    start("2024-05-01T10:31:00Z", "s2", 2, "TAG-B", 1)
    start("2024-05-01T10:32:00Z", "s3", 2, "TAG-C", 2)  # that CSMS issued id 2 again
    stop("2024-05-01T10:50:00Z", "t2", 2, 4000)
    start("2024-05-01T10:51:00Z", "s4", 3, "TAG-D", 1)

    boot201 = {"chargingStation": {"vendorName": "Acme", "model": "X2"}, "reason": "PowerUp"}
    log.exchange("2024-05-01T10:00:00Z", "b2", "BootNotification", boot201, booted, V201)

    def event(at: str, transaction: str, kind: str, seq_no: int, wh: int) -> None:
        request = {
            "eventType": kind,
            "timestamp": at,
            "triggerReason": "MeterValuePeriodic",
            "seqNo": seq_no,
            "transactionInfo": {"transactionId": transaction},
            "meterValue": [{"timestamp": at, "sampledValue": [{"value": wh}]}],
        }
        message_id = f"{transaction}-{seq_no}"
        log.exchange(at, message_id, "TransactionEvent", request, {}, V201)

    for transaction, seq_nos in (("ok", (0, 1, 2)), ("gap", (0, 2, 3))):
        for n, seq_no in enumerate(seq_nos):
            kind = "Started" if n == 0 else "Ended" if n == len(seq_nos) - 1 else "Updated"
            event(f"2024-05-01T11:0{seq_no}:00Z", transaction, kind, seq_no, 1000 + 500 * n)
    return log


@pytest.fixture(scope="module")
def surfaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[Key, bool]]:
    """The billing log imported into a SQLite store; what each surface says is billable."""
    tmp = tmp_path_factory.mktemp("billing")
    store = f"sqlite:///{tmp / 'billing.db'}"
    code, _, err = chargeledger(
        "import", str(billing_log().write(tmp / "log.jsonl")), "--store", store
    )
    assert code == 0, err

    cli = {
        (t["station"], t["transaction_id"]): t["completeness"] == "complete"
        for t in chargeledger_cli("transactions", store=store)
    }
    code, out, err = chargeledger("audit", "--store", store, "--json")
    assert code == 0, err
    doubted = {
        (f["station"], transaction_id)
        for f in json_lines(out)
        if f["kind"]
        in ("transaction_not_billable", "transaction_never_ended", "transaction_cut_off")
        for transaction_id in f["transaction_ids"]
    }
    audit = {key: key not in doubted for key in cli}

    keys = {role: new_key() for role in ROLES}
    with running_server(api_settings(store, keys)) as server:
        assert server.csms is not None
        base = f"http://127.0.0.1:{server.csms.api_port}"
        headers = {"Authorization": f"Bearer {keys['read']}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
            api: dict[Key, bool] = {}
            for complete in (True, False):
                page = http.get("/api/transactions", params={"complete": str(complete).lower()})
                assert page.json()["next"] is None
                api |= {(t["station"], t["transaction_id"]): complete for t in page.json()["items"]}
            records = http.get("/api/billing/cdrs").json()["items"]
            exported = http.get("/api/billing/cdrs.csv").text
    cdr = {(r["station"], r["transaction_id"]): r["complete"] for r in records}
    doubts = {(r["station"], r["transaction_id"]): r["doubts"] for r in records if r["doubts"]}
    assert doubts == DOUBTS
    rows = list(csv.DictReader(io.StringIO(exported)))
    # CSV cells are text: a 1.6 id is matched by its digits.
    csv_ids = {str(key[1]): key for key in EXPECTED}
    cdr_csv = {csv_ids[row["transaction_id"]]: row["complete"] == "true" for row in rows}
    assert {row["doubts"] for row in rows} == {"", "transaction_id_reused", "seq_no_gap"}
    return {"cli": cli, "api": api, "audit": audit, "cdr": cdr, "cdr_csv": cdr_csv}


@pytest.mark.parametrize("surface", ["cli", "api", "audit"])
def test_every_transaction_surface_agrees_with_the_rule(
    surfaces: dict[str, dict[Key, bool]], surface: str
) -> None:
    assert surfaces[surface] == EXPECTED


@pytest.mark.parametrize("surface", ["cdr", "cdr_csv"])
def test_the_cdr_export_agrees_on_every_ended_transaction(
    surfaces: dict[str, dict[Key, bool]], surface: str
) -> None:
    ended = {key: billable for key, billable in EXPECTED.items() if key != (V16, 3)}
    assert surfaces[surface] == ended


def _ended(**fields: Any) -> TransactionState:
    base: dict[str, Any] = {
        "transaction_id": 1,
        "station": "CP",
        "protocol": "ocpp1.6",
        "connector_id": 1,
        "id_tag": "T",
        "id_tag_status": "Accepted",
        "start_timestamp": "2024-05-01T10:00:00Z",
        "stop_timestamp": "2024-05-01T11:00:00Z",
        "meter_start": 1000,
        "meter_stop": 3000,
        "energy_wh": 2000.0,
        "status": "ended",
        "started_at": 1.0,
        "ended_at": 2.0,
        "started_position": 2,
        "positions": [1, 2, 3, 4],
    }
    return TransactionState(**(base | fields))


@pytest.mark.parametrize(
    ("fields", "doubts"),
    [
        ({}, []),
        ({"status": "active", "meter_stop": None}, ["not_ended"]),
        ({"stop_timestamp": None}, ["timestamp_missing"]),
        ({"meter_stop": None, "energy_wh": None}, ["meter_reading_missing", "energy_unknown"]),
        ({"meter_stop": 500, "energy_wh": None}, ["energy_unknown"]),
        ({"protocol": "ocpp2.0.1", "started_seq_no": 0}, []),
        ({"protocol": "ocpp2.0.1", "started_seq_no": None}, ["started_event_missing"]),
        ({"protocol": "ocpp2.0.1", "started_seq_no": 0, "seq_no_gaps": [(1, 1)]}, ["seq_no_gap"]),
    ],
)
def test_billing_doubts(fields: dict[str, Any], doubts: list[str]) -> None:
    transaction = _ended(**fields)
    assert billing_doubts(transaction) == doubts
    assert set(doubts) <= set(BILLING_DOUBTS)
    assert is_billable(transaction) is (not doubts)
    assert transaction.completeness == ("complete" if not doubts else "incomplete")
    if transaction.status == "ended":
        record = charge_detail_record(transaction)
        assert (record.complete, record.doubts) == (not doubts, doubts)
    else:
        with pytest.raises(ValueError, match="active"):
            charge_detail_record(transaction)
