"""Local authorization lists end to end: the ``ocpp`` package's 1.6 and 2.0.1 charge points
kept in sync by the local_list plugin (a full update in chunks, differential updates, a
version mismatch recovered with a full update), and the sync state rebuilt on replay."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
from ocpp.v16 import call as call16

from chargeledger.core.api import CentralSystem
from chargeledger.core.settings import Settings
from chargeledger.core.tokens import TokenRequest
from chargeledger.projections import Views
from chargeledger.projections.local_lists import StationListState
from tests import test_e2e_v16, test_e2e_v201
from tests.harness import RunningServer, running_server
from tests.test_e2e_v201 import recorded, until


async def register_token(
    csms: CentralSystem, id_token: str, status: str = "Accepted", group: str | None = None
) -> None:
    """Register a token in the registry, through the one door."""
    await csms.register_tokens([TokenRequest(id_token=id_token, status=status, group=group)])


async def remove_token(csms: CentralSystem, id_token: str) -> None:
    assert await csms.remove_token(id_token) == 1


def _synced(server: RunningServer, station: str, version: int) -> StationListState | None:
    """The station's sync state once it acknowledged ``version`` and nothing is on its way."""
    assert server.csms is not None
    state = server.csms.views.local_lists.get(station)
    if state is None or state.pending or state.acknowledged_version != version:
        return None
    return state


def lists_cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``chargeledger lists ARGS`` against the server's API, in a process of its own."""
    assert server.csms is not None
    api = f"http://127.0.0.1:{server.csms.api_port}"
    return subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", "lists", *args, "--api", api, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _sync_scenario(
    server: RunningServer,
    station: str,
    cp: Any,
    boot: Callable[[], Awaitable[Any]],
    chunk_key: str,
    *,
    by_cli: bool,
) -> dict[str, Any]:
    """Tokens A-C, a list of all of them (defined in Python or with ``chargeledger lists``),
    a boot: a full update in two chunks; then a changed token and a removed one: differential
    updates; then a VersionMismatch: a full update."""
    csms = server.csms
    assert csms is not None
    facts: dict[str, Any] = {}
    for name in ("TAG-A", "TAG-B"):
        await server.arun(register_token, csms, name)
    await server.arun(register_token, csms, "TAG-C", "Accepted", "FLEET")
    await server.arun(csms.read_configuration, station, [chunk_key])
    if by_cli:
        defined = await asyncio.to_thread(lists_cli, server, "define", "everyone")
        assert defined.returncode == 0, defined.stderr
        assert json.loads(defined.stdout)["selection"] == "all"
    else:
        await server.arun(csms.define_local_list, "everyone")
    assert cp.local_list.updates == []  # not booted: nothing sent yet
    await boot()
    await until(server, lambda: _synced(server, station, 2), "the full update in two chunks")
    facts["full"] = list(cp.local_list.updates)
    await server.arun(register_token, csms, "TAG-B", "Blocked")
    await until(server, lambda: _synced(server, station, 3), "a differential update")
    await server.arun(remove_token, csms, "TAG-A")
    await until(server, lambda: _synced(server, station, 4), "a differential removal")
    facts["differential"] = list(cp.local_list.updates[len(facts["full"]) :])
    cp.local_list.answers.append("VersionMismatch")
    await server.arun(register_token, csms, "TAG-D")
    state = await until(server, lambda: _synced(server, station, 7), "the recovery")
    facts["recovery"] = list(cp.local_list.updates[len(facts["full"]) + 2 :])
    facts["state"] = state
    facts["station_entries"] = dict(cp.local_list.entries)
    facts["station_version"] = cp.local_list.version
    facts["sync"] = await asyncio.to_thread(lists_cli, server, "sync")
    facts["behind"] = await asyncio.to_thread(lists_cli, server, "sync", "--behind")
    return facts


def _check(facts: dict[str, Any], store: str, station: str) -> None:
    assert facts["full"] == [(1, "Full", 2), (2, "Differential", 1)]
    # TAG-B blocked: only it; TAG-A removed: only its removal
    assert facts["differential"] == [(3, "Differential", 1), (4, "Differential", 1)]
    # TAG-D's update answered VersionMismatch (5), then a full update in two chunks (6, 7)
    assert facts["recovery"] == [(5, "Differential", 1), (6, "Full", 2), (7, "Differential", 1)]
    state: StationListState = facts["state"]
    assert state.mismatches == 1 and not state.needs_full
    assert (state.full_updates, state.differential_updates) == (2, 4)
    assert facts["station_version"] == state.acknowledged_version == state.sent_version == 7
    assert (
        {key[0] for key in state.entries}
        == set(facts["station_entries"])
        == {
            "TAG-B",
            "TAG-C",
            "TAG-D",
        }
    )
    held = {entry.id_token: (entry.status, entry.group) for entry in state.entries.values()}
    assert held == {
        "TAG-B": ("Blocked", None),
        "TAG-C": ("Accepted", "FLEET"),
        "TAG-D": ("Accepted", None),
    }
    replayed = Views.replay(recorded(store)).local_lists
    assert replayed.get(station) == state  # replay equals live
    sync = facts["sync"]
    assert sync.returncode == 0, sync.stderr
    (row,) = json.loads(sync.stdout)
    assert (row["station"], row["acknowledged_version"], row["entries"]) == (station, 7, 3)
    assert (row["behind"], row["too_large"], row["lists"]) == (False, False, ["everyone"])
    assert (facts["behind"].returncode, json.loads(facts["behind"].stdout)) == (0, [])


def test_v16_full_differential_mismatch_and_chunks(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'lists16.db'}"
    station = "CP-LIST-16"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        cp, ws, task = await test_e2e_v16.connect(server, station)
        cp.configuration["SendLocalListMaxLength"] = "2"
        try:
            boot = call16.BootNotification(charge_point_model="EVC5", charge_point_vendor="Acme")
            return await _sync_scenario(
                server, station, cp, partial(cp.call, boot), "SendLocalListMaxLength", by_cli=False
            )
        finally:
            task.cancel()
            await ws.close()

    with running_server(Settings(port=0, store=store, api_port=0)) as server:
        facts = asyncio.run(scenario(server))
    _check(facts, store, station)


def test_v201_full_differential_mismatch_and_chunks(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'lists201.db'}"
    station = "CS-LIST-201"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        cp, ws, task = await test_e2e_v201.connect(server, station)
        cp.variables[("LocalAuthListCtrlr", "ItemsPerMessage")] = "2"
        try:
            return await _sync_scenario(
                server, station, cp, cp.boot, "LocalAuthListCtrlr.ItemsPerMessage", by_cli=True
            )
        finally:
            task.cancel()
            await ws.close()

    with running_server(Settings(port=0, store=store, api_port=0)) as server:
        facts = asyncio.run(scenario(server))
    _check(facts, store, station)
    # 2.0.1 entries carry their type and group as the registry has them
    entries = {entry.id_token: entry for entry in facts["state"].entries.values()}
    assert entries["TAG-C"].type == "ISO14443" and entries["TAG-C"].group == "FLEET"


def test_v16_too_large_list_is_not_sent_and_failed_is_recorded(tmp_path: Path) -> None:
    """A list beyond ``LocalAuthListMaxLength`` is held back (shown ``too_large``); once the
    station may hold it, a ``Failed`` answer is recorded and the next push sends it."""
    store = f"sqlite:///{tmp_path / 'large.db'}"
    station = "CP-LIST-LARGE"

    async def scenario(server: RunningServer) -> dict[str, Any]:
        csms = server.csms
        assert csms is not None
        cp, ws, task = await test_e2e_v16.connect(server, station)
        cp.configuration["LocalAuthListMaxLength"] = "2"
        facts: dict[str, Any] = {}
        try:
            for name in ("TAG-A", "TAG-B", "TAG-C"):
                await server.arun(register_token, csms, name)
            await server.arun(csms.read_configuration, station, ["LocalAuthListMaxLength"])
            await server.arun(csms.define_local_list, "everyone")
            boot = call16.BootNotification(charge_point_model="EVC5", charge_point_vendor="Acme")
            await cp.call(boot)
            await until(
                server, lambda: csms.views.local_lists.get(station), "the version asked at boot"
            )
            await server.arun(csms.push_local_lists, [station])
            facts["held_back"] = await asyncio.to_thread(lists_cli, server, "sync", "--behind")
            facts["updates_held_back"] = list(cp.local_list.updates)
            await server.arun(csms.change_configuration, station, "LocalAuthListMaxLength", "10")
            cp.local_list.answers.append("Failed")
            await server.arun(csms.push_local_lists, [station])

            def failed() -> Any:
                state = csms.views.local_lists.get(station)
                return state if state is not None and state.failures and not state.pending else None

            facts["failed"] = msgspec_copy(await until(server, failed, "the Failed answer"))
            await server.arun(csms.push_local_lists, [station])
            facts["synced"] = await until(
                server, lambda: _synced(server, station, 2), "the full update"
            )
            facts["entries"] = sorted(cp.local_list.entries)
        finally:
            task.cancel()
            await ws.close()
        return facts

    with running_server(Settings(port=0, store=store, api_port=0)) as server:
        facts = asyncio.run(scenario(server))
    held_back = facts["held_back"]
    assert held_back.returncode == 1, held_back.stderr  # stations behind
    (row,) = json.loads(held_back.stdout)
    assert (row["too_large"], row["behind"], row["sent_version"]) == (True, True, None)
    assert facts["updates_held_back"] == []
    failed = facts["failed"]
    assert (failed.last_status, failed.failures, failed.acknowledged_version) == ("Failed", 1, None)
    assert facts["synced"].last_update_type == "Full"
    assert facts["entries"] == ["TAG-A", "TAG-B", "TAG-C"]


def msgspec_copy(state: StationListState) -> StationListState:
    """A snapshot of a live (mutable) sync state."""
    return msgspec.structs.replace(state, entries=dict(state.entries))
