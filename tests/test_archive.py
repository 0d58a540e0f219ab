"""Retention: ``chargeledger archive`` moves closed session streams to an archive file, and
``replay``/``audit``/``verify --archive`` (and ``serve`` with ``archives``) read archive +
store as the log it was: same views, intact chains; a session still open stays in the store."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from chargeledger.core.archive import archive_before, merged_events, read_archive
from chargeledger.core.events import SessionClosed, SessionOpened
from chargeledger.core.settings import Settings
from chargeledger.core.startup import startup_problems
from chargeledger.core.store import open_store
from chargeledger.projections import Views
from tests.conftest import on_sqlite_and_postgres
from tests.harness import raw_station, running_server
from tests.polling import wait_for
from tests.test_audit import chargeledger, json_lines

__all__: list[str] = []

BOOT = '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'


async def _ask(ws: websockets.ClientConnection, text: str) -> Any:
    await ws.send(text)
    return json.loads(await ws.recv())


def _start(n: int) -> str:
    return (
        f'[2,"s{n}","StartTransaction",{{"connectorId":1,"idTag":"T{n}","meterStart":0,'
        '"timestamp":"2026-01-01T00:00:00Z"}]'
    )


def _stop(n: int, transaction_id: int) -> str:
    return (
        f'[2,"e{n}","StopTransaction",{{"transactionId":{transaction_id},"meterStop":{n}000,'
        '"timestamp":"2026-01-01T01:00:00Z"}]'
    )


async def _history(url: str) -> websockets.ClientConnection:
    """A log with whole sessions (one transaction in one session, one spanning two), a refused
    handshake, and a session left open (returned)."""
    done = await raw_station(url, "CP-DONE", ["ocpp1.6"])
    await _ask(done, BOOT)
    started = await _ask(done, _start(1))
    await _ask(done, _stop(1, started[2]["transactionId"]))
    await done.close()
    with pytest.raises(websockets.InvalidStatus):
        await raw_station(url, "CP-REFUSED", ["ocpp9"])
    spanning = await raw_station(url, "CP-SPAN", ["ocpp1.6"])
    await _ask(spanning, BOOT)
    started = await _ask(spanning, _start(2))
    await spanning.close()
    again = await raw_station(url, "CP-SPAN", ["ocpp1.6"])
    await _ask(again, _stop(2, started[2]["transactionId"]))
    # Another station's session after it, so that the open one does not hold the newest event
    # (which is never archived either).
    last = await raw_station(url, "CP-LAST", ["ocpp1.6"])
    await _ask(last, BOOT)
    await last.close()
    return again  # still connected: its session stays open


@on_sqlite_and_postgres
def test_archive_then_replay_audit_verify_read_the_same_log(
    server_store: str, tmp_path: Path
) -> None:
    settings = Settings(store=server_store, port=0)
    archive = tmp_path / "2026.jsonl.gz"
    snap = tmp_path / "views.json"
    with running_server(settings) as server:
        loop = asyncio.new_event_loop()
        still_open = loop.run_until_complete(_history(server.url))
        store = open_store(server_store, create=False)
        try:
            wait_for(
                lambda: any(
                    isinstance(r.event, SessionClosed) and r.event.station == "CP-LAST"
                    for r in store.read(limit=100_000)
                ),
                what="CP-LAST's close recorded",
            )
            before = store.read(limit=100_000)
            wait_for(
                lambda: (
                    server.csms is not None and server.csms.views.position == before[-1].position
                ),
                what="the server folded the history",
            )
            code, _, err = chargeledger(
                "replay", "--store", server_store, "--snapshot", str(snap), "--save"
            )
            assert code == 0, err
            code, audited_before, err = chargeledger("audit", "--store", server_store, "--json")
            assert code == 0, err
            result = archive_before(store, time.time(), archive)
            after = store.read(limit=100_000)
        finally:
            store.close()
        loop.run_until_complete(still_open.close())
        loop.close()

    (open_session,) = {  # CP-SPAN's second session, connected while archiving
        r.stream
        for r in before
        if isinstance(r.event, SessionOpened) and r.event.station == "CP-SPAN"
    } - {r.stream for r in before if isinstance(r.event, SessionClosed)}
    assert before[-1].stream != open_session, "the open session does not hold the newest event"
    archived_streams = {r.stream for r in before} - {r.stream for r in after}
    assert open_session not in archived_streams, "an open session is never archived"
    assert [r for r in before if r.stream == open_session] == [
        r for r in after if r.stream == open_session
    ], "kept whole"
    assert result.streams == 3, "CP-DONE's session, CP-SPAN's first one, the refusal"
    assert result.kept_open == 2, "CP-SPAN's open session, CP-LAST's (the newest event)"
    assert result.events == len(before) - len(
        [r for r in after if r.position <= before[-1].position]
    )
    assert all(stream.startswith("session:") for stream in archived_streams)
    assert any(r.stream.startswith("allocator:") for r in after), "the allocator stays"

    header, rows = read_archive(archive)
    archived = list(rows)
    assert header.events == len(archived) == result.events
    assert {row.stream for row in archived} == archived_streams

    # The log read back: archive + store is the log before archiving, event for event.
    merged = list(merged_events([archive], open_store(server_store, create=False).iter_all()))
    assert merged[: len(before)] == before

    code, out, err = chargeledger("replay", "--store", server_store, "--snapshot", str(snap))
    assert code == 1, "without the archive the views lost the archived sessions"
    code, out, err = chargeledger(
        "replay", "--store", server_store, "--snapshot", str(snap), "--archive", str(archive)
    )
    assert code == 0 and "0 differences" in out, out + err

    code, out, err = chargeledger("verify", "--store", server_store, "--archive", str(archive))
    assert code == 0 and "every chain is intact" in out, out + err
    code, audited, err = chargeledger(
        "audit", "--store", server_store, "--json", "--archive", str(archive)
    )
    assert code == 0, err
    assert json_lines(audited) == json_lines(audited_before)

    # A restarted server folds its archives: its views are the views before archiving.
    restarted = Settings(store=server_store, port=0, archives=[str(archive)])
    with running_server(restarted) as server:
        assert server.csms is not None
        views = server.csms.views
        assert {t.transaction_id for t in views.transactions.all()} == {
            t.transaction_id for t in Views.replay(before).transactions.all()
        }


def test_an_archive_is_checked_when_read(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'events.db'}"
    settings = Settings(store=store_url, port=0)
    archive = tmp_path / "a.jsonl"

    async def history(url: str) -> None:
        ws = await _history(url)
        await ws.close()

    with running_server(settings) as server:
        asyncio.run(history(server.url))
    store = open_store(store_url)
    try:
        with pytest.raises(ValueError, match="in the future"):
            archive_before(store, time.time() + 3600, archive)
        result = archive_before(store, time.time(), archive)
        assert result.streams >= 3
        with pytest.raises(FileExistsError):
            archive_before(store, time.time(), archive)
    finally:
        store.close()
    code, _, err = chargeledger(
        "archive", "--store", store_url, "--before", "2026-01-01", "--to", str(archive)
    )
    assert (code, err.strip()) == (
        2,
        f"chargeledger archive: {archive} exists: an archive is never overwritten",
    )
    code, _, err = chargeledger("verify", "--store", store_url, "--archive", str(tmp_path / "no"))
    assert code == 2 and "No such file or directory" in err and "Traceback" not in err

    code, _, err = chargeledger(
        "verify", "--store", store_url, "--archive", str(archive), "--archive", str(archive)
    )
    assert code == 2 and "in two of the inputs" in err
    lines = archive.read_text().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-1]) + "\n")
    code, _, err = chargeledger("verify", "--store", store_url, "--archive", str(truncated))
    assert code == 2 and "the header says" in err
    altered = tmp_path / "altered.jsonl"
    row = json.loads(lines[2])
    row["body"] = row["body"].replace("CP-", "XX-", 1)
    altered.write_text("\n".join([*lines[:2], json.dumps(row), *lines[3:]]) + "\n")
    code, out, _ = chargeledger("verify", "--store", store_url, "--archive", str(altered))
    assert code == 1 and "BROKEN" in out
    gz = tmp_path / "copy.jsonl.gz"
    gz.write_bytes(gzip.compress(archive.read_bytes()))
    assert [r.position for r in read_archive(gz)[1]] == [
        r.position for r in read_archive(archive)[1]
    ]
    with pytest.raises(ValueError, match="memory:// cannot delete"):
        memory = open_store("memory://")
        archive_before(memory, time.time(), tmp_path / "m.jsonl")


def test_serve_refuses_archives_it_cannot_read(tmp_path: Path) -> None:
    not_archive = tmp_path / "notes.jsonl"
    not_archive.write_text('{"hello": 1}\n')
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'e.db'}",
        port=0,
        archives=[str(tmp_path / "missing.jsonl"), str(not_archive)],
    )
    assert startup_problems(settings) == [
        f"archives[0] {tmp_path / 'missing.jsonl'}: No such file or directory"
    ]
    settings = Settings(store=settings.store, port=0, archives=[str(not_archive)])
    (problem,) = startup_problems(settings)
    assert problem.startswith(f"archives: {not_archive}: not a ChargeLedger archive")
