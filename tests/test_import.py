"""``chargeledger import``: JSON Lines and text logs of other systems become sessions of
verbatim frames; malformed lines are reported by number and skipped; Ctrl-C stops cleanly."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from chargeledger.core.audit import importer
from chargeledger.core.audit.importer import LineError, parse_line
from chargeledger.core.cli import main
from chargeledger.core.events import FrameLogged, SessionClosed, SessionOpened
from chargeledger.core.store import open_store
from tests.test_audit import chargeledger, json_lines

__all__: list[str] = []

HEARTBEAT = '[2,"h1","Heartbeat",{}]'
BOOT_201 = (
    '[2, "b1", "BootNotification", {"chargingStation": {"vendorName": "V", "model": "M"},'
    ' "reason": "PowerUp"}]'
)
TEXT_LOG = f"""# exported from another CSMS
2024-05-01T10:00:00Z CP-1 in  {HEARTBEAT}
2024-05-01T10:00:00.120Z CP-1 out [3,"h1",{{"currentTime":"2024-05-01T10:00:00Z"}}]

2024-05-01T10:00:01+02:00 CS-2 in {BOOT_201}
yesterday CP-1 in {HEARTBEAT}
2024-05-01T10:00:02Z CP-1 sideways {HEARTBEAT}
2024-05-01T10:00:03Z CP-1 in
2024-05-01T13:00:00Z CP-1 in [2,"h2","Heartbeat",{{}}]
"""


def events(store: str) -> list[Any]:
    opened = open_store(store)
    try:
        return [recorded.event for recorded in opened.iter_all()]
    finally:
        opened.close()


def test_text_log_sessions_verbatim_frames_and_skipped_lines(tmp_path: Path) -> None:
    path = tmp_path / "other.log"
    path.write_text(TEXT_LOG)
    store = f"sqlite:///{tmp_path / 'imported.db'}"
    code, out, err = chargeledger("import", str(path), "--store", store)
    assert code == 1  # lines were skipped
    assert f"{path}:6: skipped: Invalid isoformat string: 'yesterday'" in err
    assert f"{path}:7: skipped: direction 'sideways' is neither 'in' nor 'out'" in err
    assert f"{path}:8: skipped: expected TIMESTAMP STATION DIRECTION FRAME" in err
    assert "imported 4 frames of 2 stations in 3 sessions" in out
    assert "CP-1 ocpp1.6, CS-2 ocpp2.0.1" in out  # CS-2's boot is valid only in 2.0.1

    log = events(store)
    frames = [event for event in log if isinstance(event, FrameLogged)]
    assert [(f.station, f.direction, f.text) for f in frames] == [
        ("CP-1", "in", HEARTBEAT),
        ("CP-1", "out", '[3,"h1",{"currentTime":"2024-05-01T10:00:00Z"}]'),
        ("CS-2", "in", BOOT_201),  # spaces and all, as the other system logged it
        ("CP-1", "in", '[2,"h2","Heartbeat",{}]'),
    ]
    assert frames[1].at == pytest.approx(1714557600.12)
    assert frames[2].at == 1714550401.0  # +02:00 honoured
    opened = [event for event in log if isinstance(event, SessionOpened)]
    closed = [event for event in log if isinstance(event, SessionClosed)]
    # CP-1 was silent for 3 hours (more than the default gap of one hour): a second session.
    assert [(o.station, o.protocol) for o in opened] == [
        ("CP-1", "ocpp1.6"),
        ("CS-2", "ocpp2.0.1"),
        ("CP-1", "ocpp1.6"),
    ]
    assert {o.node for o in opened} == {"import:other.log"}
    assert {o.path for o in opened} == {f"import:{path}"}
    assert sorted(c.session for c in closed) == sorted(o.session for o in opened)
    assert {f.session for f in frames if f.station == "CP-1"} == {
        o.session for o in opened if o.station == "CP-1"
    }


def test_json_lines_protocol_given_inferred_or_defaulted(tmp_path: Path) -> None:
    lines = [
        {"timestamp": "2024-05-01T10:00:00Z", "station": "A", "direction": "in",
         "frame": HEARTBEAT, "protocol": "ocpp2.0.1"},
        {"timestamp": "2024-05-01T10:00:00Z", "station": "B", "direction": "in",
         "frame": HEARTBEAT},
        {"timestamp": "2024-05-01T10:00:00Z", "station": "C", "direction": "in",
         "frame": '[2,"s","StartTransaction",{"connectorId":1,"idTag":"T",'
                  '"timestamp":"2024-05-01T10:00:00Z","meterStart":0}]'},
        {"timestamp": "2024-05-01T10:00:00Z", "station": "D", "direction": "in",
         "frame": "[2,"},  # garbage is still a frame the station sent: kept verbatim
        {"timestamp": "2024-05-01T10:00:00Z", "station": "E", "direction": "up",
         "frame": HEARTBEAT},
        {"timestamp": "2024-05-01T10:00:00Z", "station": "F", "direction": "in",
         "frame": ["not", "text"]},
    ]  # fmt: skip
    path = tmp_path / "log.ndjson"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n{\n")
    store = f"sqlite:///{tmp_path / 'imported.db'}"
    code, out, err = chargeledger(
        "import", str(path), "--store", store, "--json", "--protocol", "ocpp2.0.1"
    )
    assert code == 1
    skipped = json_lines(out)
    assert [line["line"] for line in skipped] == [5, 6, 8]
    assert "Invalid enum value 'up'" in skipped[0]["error"]
    assert "Expected `str`, got `array` - at `$.frame`" in skipped[1]["error"]
    assert "A ocpp2.0.1, B ocpp2.0.1, C ocpp1.6, D ocpp2.0.1" in err
    assert [e.text for e in events(store) if isinstance(e, FrameLogged)][-1] == "[2,"


def test_parse_line_formats() -> None:
    text = parse_line('2024-05-01T10:00:00Z CP-1 out  [3,"1",{}]\r\n', 3, "text")
    assert not isinstance(text, LineError) and text is not None
    assert (text.line, text.station, text.direction, text.text) == (3, "CP-1", "out", '[3,"1",{}]')
    assert parse_line("   \n", 4, "jsonl") is None
    assert parse_line("# comment\n", 5, "text") is None
    naive = parse_line("2024-05-01T10:00:00 CP-1 in []", 6, "text")
    assert naive == LineError(6, "timestamp '2024-05-01T10:00:00' has no UTC offset")


def test_ctrl_c_keeps_what_was_read_and_closes_its_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "long.log"
    path.write_text(
        "".join(
            f'2024-05-01T10:00:{n:02d}Z CP-1 in [2,"{n}","Heartbeat",{{}}]\n' for n in range(50)
        )
    )
    real = importer._Importer.frame
    seen: list[int] = []

    def frame(self: Any, line: Any, protocol: str, session_gap: float) -> None:
        seen.append(line.line)
        if line.line == 10:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C
        real(self, line, protocol, session_gap)

    monkeypatch.setattr(importer._Importer, "frame", frame)
    store = f"sqlite:///{tmp_path / 'imported.db'}"
    assert main(["import", str(path), "--store", store]) == 130
    out = capsys.readouterr().out
    assert "imported 10 frames of 1 stations in 1 sessions" in out
    assert "interrupted after line 10: the lines up to it are imported" in out
    log = events(store)
    assert sum(isinstance(event, FrameLogged) for event in log) == 10
    assert isinstance(log[-1], SessionClosed)
