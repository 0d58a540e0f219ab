"""A transaction still active where the audited log stops is ``transaction_never_ended`` only
when the log shows its station going on without it; one the log merely stops before (an
interrupted audit, a station still connected, the end of an imported file) is
``transaction_cut_off`` (docs/audit.md, "Cut off or never ended")."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from chargeledger.core.audit import progress
from chargeledger.core.audit.findings import Auditor, select
from chargeledger.core.audit.importer import END_OF_IMPORT, import_log
from chargeledger.core.cli import main
from chargeledger.core.events import Recorded, SessionClosed
from chargeledger.core.store import Store, open_store
from chargeledger.projections import Views

STATION = "CP-16"
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "EVC5"}
BOOTED = {"status": "Accepted", "currentTime": "2024-05-01T10:00:00.000Z", "interval": 300}


def _exchange(at: str, message_id: str, action: str, request: Any, answer: Any) -> str:
    def line(direction: str, frame: list[Any]) -> str:
        text = json.dumps(frame, separators=(",", ":"))
        return json.dumps(
            {"timestamp": at, "station": STATION, "direction": direction, "frame": text}
        )

    return (
        line("in", [2, message_id, action, request]) + "\n" + line("out", [3, message_id, answer])
    ) + "\n"


def _start(at: str, message_id: str, transaction_id: int, connector: int) -> str:
    request = {"connectorId": connector, "idTag": "TAG", "timestamp": at, "meterStart": 0}
    answer = {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
    return _exchange(at, message_id, "StartTransaction", request, answer)


def _log(tmp_path: Path) -> Path:
    """Session A (10:00): boot, transactions 7, 8, 9 on connectors 1, 2, 3. Two hours of
    silence (the import closes session A). Session B (12:00): the station booted again, stops
    7, starts 10 on connector 3; the file ends there."""
    stop = {"transactionId": 7, "meterStop": 5000, "timestamp": "2024-05-01T12:00:10Z"}
    path = tmp_path / "log.jsonl"
    path.write_text(
        _exchange("2024-05-01T10:00:00Z", "b1", "BootNotification", BOOT, BOOTED)
        + _start("2024-05-01T10:00:05Z", "s1", 7, 1)
        + _start("2024-05-01T10:00:06Z", "s2", 8, 2)
        + _start("2024-05-01T10:00:07Z", "s3", 9, 3)
        + _exchange("2024-05-01T12:00:00Z", "b2", "BootNotification", BOOT, BOOTED)
        + _exchange("2024-05-01T12:00:10Z", "t1", "StopTransaction", stop, {})
        + _start("2024-05-01T12:00:20Z", "s4", 10, 3)
    )
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = open_store(f"sqlite:///{tmp_path / 'cut.db'}")
    result = import_log(store, _log(tmp_path), session_gap=3600, show_progress=False)
    assert result.frames == 14
    return store


def _verdicts(
    store: Store, events: list[Recorded], *, reached_end: bool
) -> dict[int, tuple[str, str]]:
    auditor = Auditor()
    for recorded in events:
        auditor.feed(recorded)
    return {
        int(finding.transaction_ids[0]): (finding.kind, finding.detail.split(": ", 1)[1])
        for finding in select(auditor, store, reached_end=reached_end)
        if finding.kind in ("transaction_never_ended", "transaction_cut_off")
    }


def test_the_whole_log(store: Store) -> None:
    """Read to its end: 8 and 9 never ended (the station booted again; 9's connector also
    started 10); 10 is cut off by the end of the imported file."""
    events = list(store.iter_all())
    last = events[-1].event
    assert isinstance(last, SessionClosed) and last.reason == END_OF_IMPORT
    assert _verdicts(store, events, reached_end=True) == {
        8: ("transaction_never_ended", f"the station booted again at position {_boot_2(events)}"),
        9: ("transaction_never_ended", f"the station booted again at position {_boot_2(events)}"),
        10: ("transaction_cut_off", "the imported log ends there"),
    }


def test_a_log_cut_by_the_interruption(store: Store) -> None:
    """Interrupted after session A closed: nothing read shows the station going on without
    7, 8 or 9, so all three are cut off (7 did end, later). Had that been the end of the log,
    the station left without ending them: never ended."""
    events = list(store.iter_all())
    closed_a = next(i for i, r in enumerate(events) if isinstance(r.event, SessionClosed))
    read = events[: closed_a + 1]
    interrupted = "the audit was interrupted there, its end not read"
    assert _verdicts(store, read, reached_end=False) == {
        n: ("transaction_cut_off", interrupted) for n in (7, 8, 9)
    }
    left = "the station left and did not end it within the log"
    assert _verdicts(store, read, reached_end=True) == {
        n: ("transaction_never_ended", left) for n in (7, 8, 9)
    }


def test_a_station_still_connected(store: Store) -> None:
    """A live log (its station's session still open at the end): the transactions may be
    charging now; cut off, interrupted or not."""
    events = list(store.iter_all())
    before_close = next(i for i, r in enumerate(events) if isinstance(r.event, SessionClosed))
    read = events[:before_close]
    connected = "the station is still connected: it may be charging"
    for reached_end in (True, False):
        verdicts = _verdicts(store, read, reached_end=reached_end)
        if reached_end:
            assert verdicts == {n: ("transaction_cut_off", connected) for n in (7, 8, 9)}
        else:
            assert {kind for kind, _ in verdicts.values()} == {"transaction_cut_off"}


def test_ctrl_c_cuts_off_instead_of_never_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``chargeledger audit`` interrupted (Ctrl-C) in the middle of the log: what it read is
    judged as cut off, and the report says it was interrupted."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url)
    import_log(store, _log(tmp_path), session_gap=3600, show_progress=False)
    events = list(store.iter_all())
    store.close()
    closed_a = next(r.position for r in events if isinstance(r.event, SessionClosed))
    monkeypatch.setattr(progress, "PAGE", closed_a)  # the first page ends with session A
    real = Views.apply

    def apply(self: Views, recorded: Recorded) -> None:
        if recorded.position == 2:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, while the first page is read
        real(self, recorded)

    monkeypatch.setattr(Views, "apply", apply)
    capsys.readouterr()
    assert main(["audit", "--store", url, "--json"]) == 130
    findings = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    unended = {
        f["transaction_ids"][0]: f["kind"]
        for f in findings
        if f["kind"] in ("transaction_never_ended", "transaction_cut_off")
    }
    assert unended == {7: "transaction_cut_off", 8: "transaction_cut_off", 9: "transaction_cut_off"}
    cut = next(f for f in findings if f["kind"] == "transaction_cut_off")
    assert cut["severity"] == "info"
    assert f"still active at position {closed_a}" in cut["detail"]

    monkeypatch.setattr(Views, "apply", real)
    assert main(["audit", "--store", url, "--json"]) == 0
    whole = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {
        f["transaction_ids"][0]: f["kind"]
        for f in whole
        if f["kind"] in ("transaction_never_ended", "transaction_cut_off")
    } == {8: "transaction_never_ended", 9: "transaction_never_ended", 10: "transaction_cut_off"}


def _boot_2(events: list[Recorded]) -> int:
    """The position of our answer to the second BootNotification."""
    answers = [r.position for r in events if '[3,"b2"' in getattr(r.event, "text", "")]
    (position,) = answers
    return position
