"""``chargeledger replay``: a fresh fold against a saved snapshot (also on generated logs), what
changed after a projection fix, what-if re-decision, and Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeledger.core.audit import progress
from chargeledger.core.audit.replay import diff, load_snapshot, save_snapshot, snapshot
from chargeledger.core.cli import main
from chargeledger.core.events import FrameLogged, Recorded
from chargeledger.core.settings import Settings
from chargeledger.core.store import open_store
from chargeledger.projections import Views
from tests.conftest import on_sqlite_and_postgres
from tests.harness import raw_station, running_server
from tests.test_audit import V16, chargeledger, incident_log, json_lines
from tests.test_projections import Generated, operation

__all__: list[str] = []


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``chargeledger ARGS`` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def record(url: str, records: list[Recorded], chunks: list[int]) -> Views:
    """Append ``records`` (their events, in order) to the store at ``url`` in appends of the
    given sizes, folding each append's result as the server does live; the live views."""
    store = open_store(url)
    live = Views()
    try:
        items = [(r.stream, r.version + 1, r.event) for r in records if _storable(r)]
        while items:
            size = chunks[len(items) % len(chunks)]
            for recorded in store.append(items[:size]):
                live.apply(recorded)
            items = items[size:]
    finally:
        store.close()
    return live


def _storable(recorded: Recorded) -> bool:
    """Whether a WebSocket text frame could carry the event's text (the generated garbage
    includes lone surrogates, which no UTF-8 frame holds, so no store ever sees them)."""
    text = getattr(recorded.event, "text", "")
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(operation, min_size=10, max_size=60), st.lists(st.integers(1, 7), min_size=1))
def test_generated_logs_replay_to_the_views_folded_live(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    operations: list[tuple[Any, ...]],
    chunks: list[int],
) -> None:
    tmp = tmp_path_factory.mktemp("replay")
    url = f"sqlite:///{tmp / 'log.db'}"
    live = record(url, Generated(operations).log.records, chunks)
    # What a server saving its views at shutdown would leave next to the store.
    save_snapshot(tmp / "log.db.views.json", snapshot(live), 0.0)
    code, out, err = run(capsys, "replay", "--store", url)
    assert (code, err) == (0, "")
    assert f"at position {live.position}): 0 differences" in out


def test_a_fixed_projection_reports_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    code, _, err = chargeledger(
        "import", str(incident_log().write(tmp_path / "log.jsonl")), "--store", url
    )
    assert code == 0, err
    assert run(capsys, "replay", "--store", url, "--save")[0] == 0
    path = tmp_path / "incidents.db.views.json"
    # As an older, buggy projection would have left it: wrong energy, a station that was
    # never seen, and no anomaly for the sentinel stop.
    saved = load_snapshot(path)
    projections = saved["projections"]
    projections["transactions"][f"{V16}/42"]["energy_wh"] = 1234.0
    projections["stations"]["GHOST"] = {"station": "GHOST"}
    sentinel = next(k for k in projections["transactions.anomalies"] if k.startswith("sentinel"))
    del projections["transactions.anomalies"][sentinel]
    path.write_text(json.dumps(saved))

    code, out, err = run(capsys, "replay", "--store", url, "--json")
    assert code == 1
    assert "3 differences" in err
    assert sorted(json_lines(out), key=lambda d: d["projection"]) == [
        {
            "projection": "stations",
            "key": "GHOST",
            "change": "removed",
            "field": None,
            "saved": {"station": "GHOST"},
            "replayed": None,
        },
        {
            "projection": "transactions",
            "key": f"{V16}/42",
            "change": "changed",
            "field": "energy_wh",
            "saved": 1234.0,
            "replayed": 8000.0,
        },
        {
            "projection": "transactions.anomalies",
            "key": sentinel,
            "change": "added",
            "field": None,
            "saved": None,
            "replayed": json.loads(
                json.dumps(snapshot_of(url)["transactions.anomalies"][sentinel])
            ),
        },
    ]
    code, out, _ = run(capsys, "replay", "--store", url)
    assert f"transactions {V16}/42 energy_wh: 1234.0 -> 8000.0" in out
    assert "stations GHOST: removed" in out


def snapshot_of(url: str) -> dict[str, Any]:
    store = open_store(url)
    try:
        return dict(snapshot(Views.replay(store.iter_all()))["projections"])
    finally:
        store.close()


@on_sqlite_and_postgres
def test_compares_at_the_snapshot_position_and_notices_a_shorter_log(
    server_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server_store
    snapshot_file = tmp_path / "views.json"
    store = open_store(url)
    store.append([("s", n, _frame(n)) for n in range(1, 4)])
    store.close()
    assert run(capsys, "replay", "--store", url, "--snapshot", str(snapshot_file), "--save")[0] == 0
    store = open_store(url)
    store.append([("s", n, _frame(n)) for n in range(4, 6)])  # committed after the snapshot
    store.close()
    code, out, _ = run(capsys, "replay", "--store", url, "--snapshot", str(snapshot_file))
    assert code == 0
    assert "replayed 5 events up to position 5" in out
    assert "at position 3): 0 differences" in out

    saved = load_snapshot(snapshot_file)
    saved["position"] = 9
    snapshot_file.write_text(json.dumps(saved))
    code, out, _ = run(capsys, "replay", "--store", url, "--snapshot", str(snapshot_file))
    assert "the log ends at position 5, before the snapshot's position 9" in out
    assert diff(saved, saved) == []


def test_snapshot_needs_a_path_for_other_stores(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "replay", "--store", "memory://")
    assert code == 2 and "give --snapshot FILE" in err


def _frame(n: int) -> FrameLogged:
    return FrameLogged(station="CP", session="s", at=float(n), direction="in", text=f"[{n}]")


@on_sqlite_and_postgres
def test_what_if_today_answers_the_retransmitted_start_with_the_existing_id(
    server_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server_store
    code, _, err = chargeledger(
        "import", str(incident_log().write(tmp_path / "log.jsonl")), "--store", url
    )
    assert code == 0, err
    store = open_store(url)
    before = store.max_position()
    store.close()
    code, out, err = run(capsys, "replay", "--what-if", "--store", url, "--json")
    assert code == 1
    assert "re-decided 24 station CALLs up to position 52" in err
    differences = {
        (d["station"], d["action"], tuple(d["transaction_ids"])): d for d in json_lines(out)
    }
    retransmitted = differences[(V16, "StartTransaction", (42, 41))]
    assert retransmitted["recorded"] == (
        '[3,"s2",{"transactionId":42,"idTagInfo":{"status":"Accepted"}}]'
    )
    assert (
        retransmitted["today"] == '[3,"s2",{"idTagInfo":{"status":"Accepted"},"transactionId":41}]'
    )
    assert "today's rules answer with the existing transaction 41" in retransmitted["detail"]
    reused = differences[(V16, "StartTransaction", (44,))]
    assert '"transactionId":"<new id>"' in reused["today"]
    assert "today's rules issue a new id" in reused["detail"]
    store = open_store(url)
    assert store.max_position() == before  # nothing was written
    store.close()


@on_sqlite_and_postgres
def test_what_if_on_todays_own_log_changes_nothing(
    server_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server_store
    start = (
        '"StartTransaction",{"connectorId":1,"idTag":"T","timestamp":"2024-05-01T10:00:00Z",'
        '"meterStart":0}]'
    )

    async def station(server_url: str) -> None:
        ws = await raw_station(server_url, "CP-1", ["ocpp1.6"])
        try:
            for text in (
                '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]',
                '[2,"s1",' + start,
                '[2,"s2",' + start,  # retransmitted under a new message id
                '[2,"s2",' + start,  # and verbatim: answered from the gateway's memory
                '[2,"t",' + '"StopTransaction",{"transactionId":1,"meterStop":5,'
                '"timestamp":"2024-05-01T11:00:00Z"}]',
                '[2,"x",{}]',  # malformed
                '[2,"h","Heartbeat",{"unexpected":1}]',  # invalid
                '[2,"h2","Heartbeat",{}]',
            ):
                await ws.send(text)
                await ws.recv()
        finally:
            await ws.close()

    with running_server(Settings(port=0, store=url, node="n")) as server:
        asyncio.run(station(server.url))
    code, out, _ = run(capsys, "replay", "--what-if", "--store", url)
    assert code == 0, out
    assert "re-decided 7 station CALLs" in out
    assert "0 answered differently today; 1 answered from the gateway's memory" in out


def test_ctrl_c_stops_replay_and_audit_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store = open_store(url)
    store.append([("s", n, _frame(n)) for n in range(1, 101)])
    store.close()
    monkeypatch.setattr(progress, "PAGE", 10)
    real = Views.apply

    def apply(self: Views, recorded: Recorded) -> None:
        if recorded.position == 25:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C
        real(self, recorded)

    monkeypatch.setattr(Views, "apply", apply)
    code, out, _ = run(capsys, "replay", "--store", url, "--save")
    assert code == 130
    assert "replayed 30 events up to position 30" in out  # the page under way is finished
    assert "interrupted: replayed up to position 30 only; nothing saved" in out
    assert not (tmp_path / "log.db.views.json").exists()
    code, out, _ = run(capsys, "audit", "--store", url)
    assert code == 130
    assert "(INTERRUPTED: partial): 30 events up to position 30" in out
    # Ctrl-C outside these loops still interrupts as usual.
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("read_ahead", [False, True])
def test_pages_end_at_the_last_position_with_or_without_read_ahead(
    monkeypatch: pytest.MonkeyPatch, read_ahead: bool
) -> None:
    monkeypatch.setattr(progress, "PAGE", 3)
    events = [
        Recorded(position, "s", position, _frame(position)) for position in (1, 2, 4, 7, 8, 9, 12)
    ]
    reads: list[int] = []

    def read(after: int, limit: int, stop: int) -> list[Recorded]:
        reads.append(after)
        return [r for r in events if after < r.position <= stop][:limit]

    got = [
        [r.position for r in page] for page in progress.pages(read, 9, "t", False, None, read_ahead)
    ]
    assert got == [[1, 2, 4], [7, 8, 9]]
    assert reads == [0, 4]  # nothing read past the last position
