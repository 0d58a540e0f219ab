"""Tamper evidence: every event is hash-chained to the previous one of its stream (store,
writer, allocator, server), ``chargeledger verify`` names the first broken link, and signed
meter values stay verbatim."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql

from chargeledger.core.audit.verify import ChainVerifier
from chargeledger.core.cli import main
from chargeledger.core.events import FrameLogged, encode_event
from chargeledger.core.settings import Settings
from chargeledger.core.store import GENESIS, Store, chain_hash, open_store, unpack_state
from chargeledger.core.writer import GroupCommitWriter
from tests.conftest import POSTGRES_BASE_URL
from tests.harness import raw_station, running_server
from tests.test_audit import chargeledger, json_lines

__all__: list[str] = []


def frame(n: int, session: str = "s1") -> FrameLogged:
    return FrameLogged(
        station="CP-1", session=session, at=1_700_000_000.0 + n, direction="in", text=f"[{n}]"
    )


def verified(store: Store) -> ChainVerifier:
    verifier = ChainVerifier()
    verifier.check(store.read_rows(limit=100_000))
    return verifier


def test_events_are_chained_per_stream(store: Store) -> None:
    first = store.append([("a", 1, frame(1)), ("b", 1, frame(2)), ("a", 2, frame(3))])
    # No heads given: the store looks up the stream's newest hash itself.
    second = store.append([("a", 3, frame(4))])
    a1, b1, a2 = first
    assert a1.prev_hash == b1.prev_hash == GENESIS
    assert a2.prev_hash == a1.hash and second[0].prev_hash == a2.hash
    topic, body = encode_event(frame(1))
    assert a1.hash == hashlib.sha256(GENESIS + f"a\x001\x00{topic}\x00".encode() + body).digest()
    assert a1.hash == chain_hash(GENESIS, "a", 1, topic, body)
    assert store.read() == first + second  # reads expose the same hashes
    assert store.stream_head("a") == (3, second[0].hash)
    assert store.stream_head("nothing") == (0, GENESIS)
    checked = verified(store)
    assert (checked.events, checked.streams, checked.breaks) == (4, 2, [])


def test_heads_given_by_the_caller_are_used(store: Store) -> None:
    (one,) = store.append([("a", 1, frame(1))])
    assert one.hash is not None
    (two,) = store.append([("a", 2, frame(2))], heads={"a": one.hash})
    assert two.prev_hash == one.hash
    assert verified(store).breaks == []


async def test_the_writer_chains_across_batches_and_restarts(store: Store) -> None:
    for _ in range(2):  # a second writer meets the streams afresh and looks their heads up
        async with GroupCommitWriter(store, max_batch=3) as writer:
            for n in range(5):
                await writer.append([(f"s{n % 2}", frame(n)), ("s2", frame(n))])
    checked = verified(store)
    assert (checked.events, checked.streams, checked.breaks) == (20, 3, [])


def _tamper_sqlite(path: Path, position: int, change: Callable[[bytes], bytes | None]) -> None:
    with sqlite3.connect(path) as db:
        (state,) = db.execute(
            "SELECT state FROM stored_events WHERE rowid=?", (position,)
        ).fetchone()
        changed = change(state)
        if changed is None:
            db.execute("DELETE FROM stored_events WHERE rowid=?", (position,))
        else:
            db.execute("UPDATE stored_events SET state=? WHERE rowid=?", (changed, position))


def _rehash(state: bytes, text: bytes, forged: bytes) -> bytes:
    """``state`` with ``text`` replaced and its own hash recomputed: a careful forger."""
    prev, _, body = unpack_state(state)
    assert prev is not None
    body = body.replace(text, forged)
    return b"\x01" + prev + chain_hash(prev, "s", 3, "FrameLogged", body) + body


@pytest.mark.parametrize(
    ("change", "broken_at", "problem"),
    [
        (lambda s: s.replace(b"[3]", b"[9]"), 3, "its hash does not match its content"),
        (lambda s: _rehash(s, b"[3]", b"[9]"), 4, "its prev_hash is not the hash of the stream's"),
        (lambda s: None, 4, "version 4 follows version 2 (position 2)"),
        (lambda s: unpack_state(s)[2], 3, "the event carries no hash"),
    ],
    ids=["altered", "altered-and-rehashed", "deleted", "unchained"],
)
def test_verify_names_the_first_broken_link_in_sqlite(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[bytes], bytes | None],
    broken_at: int,
    problem: str,
) -> None:
    path = tmp_path / "events.db"
    store = open_store(f"sqlite:///{path}")
    store.append([("s", n, frame(n)) for n in range(1, 6)] + [("t", 1, frame(6, "s2"))])
    store.close()
    url = f"sqlite:///{path}"
    assert main(["verify", "--store", url]) == 0
    _tamper_sqlite(path, 3, change)
    capsys.readouterr()
    assert main(["verify", "--store", url]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN at position {broken_at} (s version {broken_at}): {problem}" in out
    assert f"1 broken chains, the first at position {broken_at}" in out
    assert main(["verify", "--store", url, "--json"]) == 1
    (reported,) = json_lines(capsys.readouterr().out)
    assert (reported["position"], reported["stream"]) == (broken_at, "s")


@pytest.mark.postgres
def test_verify_names_the_altered_row_in_postgresql(postgres_url: str) -> None:
    store = open_store(postgres_url)
    recorded = store.append([("s", n, frame(n)) for n in range(1, 6)])
    store.close()
    assert chargeledger("verify", "--store", postgres_url)[0] == 0
    schema = parse_qs(urlsplit(postgres_url).query)["schema"][0]
    target = recorded[2].position
    table = sql.SQL("{}.stored_events").format(sql.Identifier(schema))
    with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as db:
        select = sql.SQL("SELECT state FROM {} WHERE notification_id = %s").format(table)
        (state,) = db.execute(select, (target,)).fetchone() or ()
        update = sql.SQL("UPDATE {} SET state = %s WHERE notification_id = %s").format(table)
        db.execute(update, (bytes(state).replace(b"[3]", b"[9]"), target))
    code, out, err = chargeledger("verify", "--store", postgres_url)
    assert code == 1, err
    assert f"BROKEN at position {target} (s version 3): its hash does not match" in out


OCMF = (
    '[2,"m1","MeterValues",{"connectorId":1,"transactionId":1,"meterValue":[{"timestamp":'
    '"2024-05-01T10:00:00Z","sampledValue":[{"value":"OCMF|{\\"FV\\":\\"1.0\\",\\"GI\\":'
    '\\"ABL SBC-301\\",\\"RD\\":[{\\"TM\\":\\"2024-05-01T10:00:00,000+0000 S\\",\\"RV\\":'
    '0.2596,\\"RI\\":\\"1-b:1.8.0\\",\\"RU\\":\\"kWh\\"}]}|{\\"SA\\":\\"ECDSA-secp256r1-SHA256'
    '\\",\\"SD\\":\\"3045022100E3B21B1A0E6F3B54\\"}","format":"SignedData",'
    '"context":"Sample.Periodic",  "measurand":"Energy.Active.Import.Register"}]}]}]'
)


def test_signed_meter_values_stay_verbatim_and_the_server_log_verifies(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'server.db'}"

    async def station(url: str) -> None:
        ws = await raw_station(url, "CP-OCMF", ["ocpp1.6"])
        try:
            for text in (
                '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]',
                '[2,"s","StartTransaction",{"connectorId":1,"idTag":"T",'
                '"timestamp":"2024-05-01T10:00:00Z","meterStart":0}]',
                OCMF,
            ):
                await ws.send(text)
                await ws.recv()
        finally:
            await ws.close()

    with running_server(Settings(port=0, store=store, node="n")) as server:
        asyncio.run(station(server.url))
    code, out, _ = chargeledger("events", "--store", store, "--json", "--station", "CP-OCMF")
    frames = [e["event"]["text"] for e in json_lines(out) if e["kind"] == "FrameLogged"]
    assert OCMF in frames  # byte for byte, odd spacing and escapes included
    code, out, err = chargeledger("verify", "--store", store)
    assert code == 0, err
    assert "every chain is intact" in out
