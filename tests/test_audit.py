"""``chargeledger audit``: a 1.6 and a 2.0.1 station's log with known incidents, imported from
JSON Lines, audited through the CLI; the exact findings, the filters, the HTML report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["IncidentLog", "chargeledger", "incident_log"]

V16, V201 = "CP-16", "CS-201"
START = {
    "connectorId": 1,
    "idTag": "TAG-1",
    "timestamp": "2024-05-01T10:00:05Z",
    "meterStart": 1000,
}
ACCEPTED = {"status": "Accepted"}


def chargeledger(*args: str) -> tuple[int, str, str]:
    """Run ``chargeledger ARGS`` as a separate process: exit status, stdout, stderr."""
    completed = subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    return completed.returncode, completed.stdout, completed.stderr


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class IncidentLog:
    """A JSON Lines log, built exchange by exchange; remembers each frame's line."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    line_of: dict[tuple[str, str], int] = field(default_factory=dict)
    """(message id, direction) -> line number (1-based)."""

    def frame(self, timestamp: str, station: str, direction: str, frame: list[Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        self.lines.append(
            {"timestamp": timestamp, "station": station, "direction": direction, "frame": text}
        )
        self.line_of[(frame[1], direction)] = len(self.lines)

    def exchange(
        self,
        timestamp: str,
        message_id: str,
        action: str,
        request: dict[str, Any],
        response: dict[str, Any],
        station: str = V16,
    ) -> None:
        self.frame(timestamp, station, "in", [2, message_id, action, request])
        self.frame(timestamp, station, "out", [3, message_id, response])

    def request(self, message_id: str) -> dict[str, Any]:
        """The payload of the CALL with ``message_id``."""
        frame: list[Any] = json.loads(self.lines[self.line_of[(message_id, "in")] - 1]["frame"])
        return dict(frame[3])

    def write(self, path: Path, extra: str = "") -> Path:
        path.write_text("".join(json.dumps(line) + "\n" for line in self.lines) + extra)
        return path


def _transaction_event(
    log: IncidentLog, timestamp: str, message_id: str, event: str, seq_no: int, **more: Any
) -> None:
    transaction = more.pop("transaction", "tx-1")
    request = {
        "eventType": event,
        "timestamp": timestamp,
        "triggerReason": "MeterValuePeriodic",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": transaction},
        **more,
    }
    log.exchange(timestamp, message_id, "TransactionEvent", request, {}, V201)


def incident_log() -> IncidentLog:
    """Frame sequences of real 1.6 and 2.0.1 stations (the 1.6 ones answered by a CSMS that
    issued a new id for a retransmitted StartTransaction), with one incident of each kind."""
    log = IncidentLog()

    def start(at: str, message_id: str, transaction_id: int, **request: Any) -> None:
        answer = {"transactionId": transaction_id, "idTagInfo": ACCEPTED}
        log.exchange(at, message_id, "StartTransaction", {**START, **request}, answer)

    def stop(at: str, message_id: str, transaction_id: int, meter_stop: int) -> None:
        request = {"transactionId": transaction_id, "meterStop": meter_stop, "timestamp": at}
        log.exchange(at, message_id, "StopTransaction", request, {})

    boot16 = {"chargePointVendor": "Acme", "chargePointModel": "EVC5"}
    booted = {"status": "Accepted", "currentTime": "2024-05-01T10:00:00.000Z", "interval": 300}
    log.exchange("2024-05-01T10:00:00Z", "b1", "BootNotification", boot16, booted)
    start("2024-05-01T10:00:05Z", "s1", 41)
    # Its CALLRESULT was lost; the station retransmitted; that CSMS issued a second id.
    start("2024-05-01T10:00:35Z", "s2", 42)
    meter = {"timestamp": "2024-05-01T10:10:00Z", "sampledValue": [{"value": "4000"}]}
    request = {"connectorId": 1, "transactionId": 42, "meterValue": [meter]}
    log.exchange("2024-05-01T10:10:00Z", "m1", "MeterValues", request, {})
    stop("2024-05-01T10:30:00Z", "t1", 42, 9000)
    log.exchange("2024-05-01T10:30:40Z", "t2", "StopTransaction", log.request("t1"), {})
    stop("2024-05-01T10:31:00Z", "t3", -1, 0)
    other = {"connectorId": 2, "meterStart": 5000}
    start(
        "2024-05-01T10:40:00Z", "s3", 43, idTag="TAG-2", timestamp="2024-05-01T10:40:00Z", **other
    )
    stop("2024-05-01T10:50:00Z", "t4", 43, 4000)  # below its meterStart
    start("2024-05-01T11:00:00Z", "s4", 44, idTag="TAG-3", timestamp="2024-05-01T11:00:00Z")
    stop("2024-05-01T11:01:00Z", "t5", 44, 201000)  # 200 kWh in one minute
    start("2024-05-01T11:05:00Z", "s5", 44, idTag="TAG-4", timestamp="2024-05-01T11:05:00Z")
    stop("2024-05-01T11:06:00Z", "t6", 777, 10)
    # Started at 08:00 while offline, delivered in the session that opened at 10:00.
    start("2024-05-01T11:10:00Z", "s6", 45, idTag="TAG-5", timestamp="2024-05-01T08:00:00Z")
    stop("2024-05-01T11:20:00Z", "t7", 45, 3000)

    boot201 = {"chargingStation": {"vendorName": "Acme", "model": "X2"}, "reason": "PowerUp"}
    log.exchange("2024-05-01T10:00:00Z", "b2", "BootNotification", boot201, booted, V201)
    place = {"evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": "TOK", "type": "ISO14443"}}
    event = _transaction_event
    event(log, "2024-05-01T10:01:00Z", "e0", "Started", 0, **place)
    event(log, "2024-05-01T10:02:00Z", "e1", "Updated", 1)
    event(log, "2024-05-01T10:03:00Z", "e3", "Updated", 3)  # seqNo 2 is missing: a gap
    event(log, "2024-05-01T10:03:10Z", "e3b", "Updated", 3)  # seqNo 3 again
    event(log, "2024-05-01T10:04:00Z", "e2", "Updated", 2)  # seqNo 2, late
    event(log, "2024-05-01T10:05:00Z", "e4", "Ended", 4)
    event(log, "2024-05-01T10:06:00Z", "e5", "Updated", 5)  # after Ended
    event(log, "2024-05-01T10:07:00Z", "o0", "Started", 0, transaction="tx-2", offline=True)
    return log


@pytest.fixture(scope="module")
def audited(module_server_store: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The incident log imported into an SQLite store, then a PostgreSQL one; its events and
    its audit."""
    tmp = tmp_path_factory.mktemp("audit")
    store = module_server_store
    log = incident_log()
    code, _, err = chargeledger("import", str(log.write(tmp / "log.jsonl")), "--store", store)
    assert code == 0, err
    code, out, err = chargeledger("events", "--store", store, "--json")
    assert code == 0, err
    events = json_lines(out)
    position = {
        (line, event["event"]["direction"]): event["position"]
        for event in events
        if event["kind"] == "FrameLogged"
        for line in [json.loads(event["event"]["text"])[1]]
    }
    code, out, err = chargeledger("audit", "--store", store, "--json")
    assert code == 0, err
    return {"store": store, "findings": json_lines(out), "position": position, "tmp": tmp}


def _exchange(position: dict[tuple[str, str], int], *message_ids: str) -> list[int]:
    return sorted(position[(m, d)] for m in message_ids for d in ("in", "out"))


def test_audit_finds_every_incident_with_its_evidence(audited: dict[str, Any]) -> None:
    p = audited["position"]

    def of(*message_ids: str) -> list[int]:
        return _exchange(p, *message_ids)

    expected: list[tuple[str, str, list[Any], list[int]]] = [
        ("duplicate_start", V16, [41, 42], of("s1", "s2")),
        ("duplicate_stop", V16, [42], of("s2", "t1", "t2")),
        ("sentinel_transaction_id", V16, [-1], of("t3")),
        ("meter_stop_below_start", V16, [43], of("s3", "t4")),
        ("energy_implausible", V16, [44], of("s4", "t5")),
        ("transaction_id_reused", V16, [44], of("s4", "t5", "s5")),
        ("stop_for_unknown_transaction", V16, [777], of("t6")),
        ("started_offline", V16, [45], of("s6")),
        ("transaction_never_ended", V16, [41], of("s1")),
        ("transaction_not_billable", V16, [42], of("s2", "t1")),
        ("transaction_not_billable", V16, [43], of("s3", "t4")),
        ("transaction_not_billable", V16, [44], of("s4", "t5")),
        ("seq_no_gap", V201, ["tx-1"], of("e0", "e3")),
        ("seq_no_duplicate", V201, ["tx-1"], of("e0", "e3b")),
        ("seq_no_out_of_order", V201, ["tx-1"], of("e0", "e2")),
        ("event_after_ended", V201, ["tx-1"], of("e0", "e4", "e5")),
        ("transaction_not_billable", V201, ["tx-1"], of("e0", "e4")),
        ("started_offline", V201, ["tx-2"], of("o0")),
        # The imported file ends right after its start: cut off by the log, not never ended.
        ("transaction_cut_off", V201, ["tx-2"], of("o0")),
    ]
    issued: list[tuple[str, str, list[Any], list[int]]] = [
        ("transaction_issued", V16, [tid], of(start))
        for tid, start in ((41, "s1"), (42, "s2"), (43, "s3"), (44, "s4"), (45, "s6"))
    ] + [
        ("transaction_issued", V201, [tid], of(first))
        for tid, first in (("tx-1", "e0"), ("tx-2", "o0"))
    ]
    got = [
        (f["kind"], f["station"], f["transaction_ids"], f["positions"]) for f in audited["findings"]
    ]
    assert sorted(got, key=repr) == sorted(expected + issued, key=repr)


def test_findings_carry_severity_time_detail_and_verbatim_frames(audited: dict[str, Any]) -> None:
    findings = {(f["kind"], f["station"]): f for f in audited["findings"]}
    double = findings[("duplicate_start", V16)]
    assert double["severity"] == "error"
    assert double["at"] == "2024-05-01T10:00:35.000Z"  # the second id was issued then
    assert "same start as transaction 41" in double["detail"]
    frames = [
        (e["position"], e["event"]["direction"], e["event"]["text"]) for e in double["evidence"]
    ]
    assert [position for position, _, _ in frames] == double["positions"]
    assert frames[-1][2] == '[3,"s2",{"transactionId":42,"idTagInfo":{"status":"Accepted"}}]'
    assert frames[0][2] == json.dumps([2, "s1", "StartTransaction", START], separators=(",", ":"))
    energy = findings[("energy_implausible", V16)]
    assert "200000 Wh in 60 s" in energy["detail"] and "12000.0 kW" in energy["detail"]
    assert findings[("transaction_issued", V16)]["severity"] == "info"
    assert findings[("seq_no_gap", V201)]["severity"] == "warning"
    assert {f["source"] for f in audited["findings"]} == {"projection", "audit"}


def test_filters_by_station_time_kind_and_power(audited: dict[str, Any]) -> None:
    store = audited["store"]

    def kinds(*args: str) -> list[tuple[str, str]]:
        code, out, err = chargeledger("audit", "--store", store, "--json", *args)
        assert code == 0, err
        return sorted((f["kind"], f["station"]) for f in json_lines(out))

    only_201 = kinds("--station", V201)
    assert only_201 and {station for _, station in only_201} == {V201}
    window = kinds("--since", "2024-05-01T10:30:00Z", "--until", "2024-05-01T10:45:00Z")
    assert window == [
        ("duplicate_stop", V16),
        ("sentinel_transaction_id", V16),
        ("transaction_issued", V16),
        ("transaction_not_billable", V16),
    ]
    assert kinds("--kind", "energy_implausible", "--max-power-kw", "20000") == []
    assert kinds("--kind", "energy_implausible") == [("energy_implausible", V16)]


def test_terminal_summary_and_html_report(audited: dict[str, Any]) -> None:
    html = audited["tmp"] / "report.html"
    code, out, err = chargeledger("audit", "--store", audited["store"], "--html", str(html))
    assert code == 0, err
    assert "26 findings: 4 error, 14 warning, 8 info" in out
    assert "ERROR    duplicate_start  station CP-16  transaction 41, 42" in out
    assert f"HTML report: {html}" in out
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert 'id="duplicate_start"' in page
    # Frames appear verbatim (HTML-escaped).
    assert "[3,&#34;s2&#34;,{&#34;transactionId&#34;:42," in page


def test_audit_of_a_missing_store_fails_clearly(tmp_path: Path) -> None:
    code, _, err = chargeledger("audit", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "no store at" in err
