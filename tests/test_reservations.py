"""Reservations end to end with the ``ocpp`` charge points (1.6 and 2.0.1): made through the
one door, used, cancelled, rejected, expired by the recorded timer (also across a restart),
ended by the station's ReservationStatusUpdate; the starts they do not explain flagged; and
the projection rebuilt by replay equals the live one."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from chargeledger.core.audit.replay import snapshot
from chargeledger.core.commands import StartTimer
from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.events import CommandRequested, TimerFired, TimerStarted
from chargeledger.core.settings import Settings
from chargeledger.core.store import open_store
from chargeledger.core.times import rfc3339
from chargeledger.core.usecases import UseCaseResult
from chargeledger.projections import Views, reservation_json
from chargeledger.projections.reservations import ReservationState, reservation_timer
from tests import test_e2e_v16, test_e2e_v201
from tests.harness import RunningServer, chargeledger_cli, running_server
from tests.polling import wait_for
from tests.test_e2e_v201 import NOW, until


async def reserve(server: RunningServer, station: str, **arguments: Any) -> UseCaseResult:
    assert server.csms is not None
    result: UseCaseResult = await server.arun(
        partial(server.csms.reserve_now, station, **arguments)
    )
    return result


def reservation(server: RunningServer, station: str, reservation_id: int) -> ReservationState:
    assert server.csms is not None
    state = server.csms.views.reservations.get(station, reservation_id)
    assert state is not None
    return state


async def status_is(
    server: RunningServer, station: str, reservation_id: int, status: str
) -> ReservationState:
    def probe() -> ReservationState | None:
        state = reservation(server, station, reservation_id)
        return state if state.status == status else None

    return await until(server, probe, f"reservation {reservation_id} {status}")


def live_and_replayed(server: RunningServer) -> tuple[Any, Any]:
    """The live reservations and anomalies, and those a replay of the store folds."""
    assert server.csms is not None

    def shown(views: Views) -> Any:
        return (
            [reservation_json(state) for state in views.reservations.all()],
            views.reservations.anomalies,
        )

    async def read() -> Any:
        return shown(server.csms.views)  # type: ignore[union-attr]

    live = server.run(read)
    return live, shown(Views.replay(server.csms.store.iter_all()))


def test_v16_used_cancelled_rejected_expired_and_flagged(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'reservations.db'}"
    station = "CP-R16"

    async def scenario(server: RunningServer) -> dict[str, int]:
        cp, ws, task = await test_e2e_v16.connect(server, station)
        ids: dict[str, int] = {}
        try:
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            now = time.time()
            made = await reserve(
                server, station, id_token="TAG-A", expiry=rfc3339(now + 600), connector_id=1
            )
            assert (made.accepted, made.action) == (True, "ReserveNow")
            ids["used"] = made.values["reservation_id"]
            started = await cp.call(
                call16.StartTransaction(
                    connector_id=1,
                    id_tag="TAG-A",
                    meter_start=0,
                    timestamp=rfc3339(now),
                    reservation_id=ids["used"],
                )
            )
            used = await status_is(server, station, ids["used"], "used")
            assert used.transaction_id == started.transaction_id

            held = await reserve(
                server, station, id_token="TAG-B", expiry=rfc3339(now + 600), connector_id=2
            )
            ids["cancelled"] = held.values["reservation_id"]
            assert ids["cancelled"] > ids["used"]  # allocated by the CSMS, never repeated
            await cp.call(  # another token starts on the reserved connector: flagged
                call16.StartTransaction(
                    connector_id=2, id_tag="TAG-X", meter_start=0, timestamp=rfc3339(now)
                )
            )
            await cp.call(  # a reservation the CSMS never made: flagged
                call16.StartTransaction(
                    connector_id=3,
                    id_tag="TAG-Y",
                    meter_start=0,
                    timestamp=rfc3339(now),
                    reservation_id=987654,
                )
            )
            cancelled = await server.arun(
                partial(server.csms.cancel_reservation, station, ids["cancelled"])  # type: ignore[union-attr]
            )
            assert cancelled.accepted
            assert (await status_is(server, station, ids["cancelled"], "cancelled")).ended_by == (
                "csms"
            )

            cp.reserve_status = "Occupied"
            refused = await reserve(
                server, station, id_token="TAG-C", expiry=rfc3339(now + 600), connector_id=3
            )
            assert (refused.accepted, refused.status) == (False, "Occupied")
            ids["rejected"] = refused.values["reservation_id"]
            assert reservation(server, station, ids["rejected"]).status == "rejected"
            cp.reserve_status = "Accepted"

            # Expiry: the timer is recorded fired, and the fold reads its due time.
            soon = await reserve(
                server, station, id_token="TAG-D", expiry=rfc3339(time.time() + 1), connector_id=3
            )
            ids["expired"] = soon.values["reservation_id"]
            expired = await status_is(server, station, ids["expired"], "expired")
            assert expired.ended_at == expired.expires_at and expired.ended_by == "csms"

            # Refused before anything is recorded or sent.
            with pytest.raises(InvalidUseCaseArguments, match="not in the future"):
                await reserve(
                    server, station, id_token="TAG-E", expiry=rfc3339(now - 1), connector_id=1
                )
            with pytest.raises(UnsupportedUseCase, match="ReserveConnectorZeroSupported"):
                await reserve(server, station, id_token="TAG-E", expiry=rfc3339(now + 600))
            cp.configuration["ReserveConnectorZeroSupported"] = "true"
            await server.arun(
                partial(
                    server.csms.read_configuration,  # type: ignore[union-attr]
                    station,
                    ["ReserveConnectorZeroSupported"],
                )
            )
            whole = await reserve(server, station, id_token="TAG-E", expiry=rfc3339(now + 600))
            ids["whole"] = whole.values["reservation_id"]
            assert reservation(server, station, ids["whole"]).connector_id == 0

            # Pending at the restart (the server stops at once, well before it is due):
            # re-armed from the log.
            later = await reserve(
                server, station, id_token="TAG-F", expiry=rfc3339(time.time() + 5), connector_id=4
            )
            ids["rearmed"] = later.values["reservation_id"]
        finally:
            task.cancel()
            await ws.close()
        return ids

    with running_server(Settings(port=0, store=store)) as server:
        ids = _asyncio(scenario, server)
        assert server.csms is not None
        commands = [
            r.event.payload.get("id_token")
            for r in server.csms.store.iter_all()
            if isinstance(r.event, CommandRequested) and r.event.command == "reserve_now"
        ]
        assert "TAG-E" in commands and commands.count("TAG-E") == 1  # the refused two: none
        anomalies = {(a.kind, a.reservation_id) for a in server.csms.views.reservations.anomalies}
        assert anomalies == {
            ("reserved_by_other", ids["cancelled"]),
            ("unknown_reservation", 987654),
        }
    name = reservation_timer(station, ids["rearmed"])
    events = [r.event for r in _records(store)]
    assert any(isinstance(e, TimerStarted) and e.name == name for e in events)
    assert not any(isinstance(e, TimerFired) and e.name == name for e in events)
    with running_server(Settings(port=0, store=store)) as server:
        _asyncio(lambda s: status_is(s, station, ids["rearmed"], "expired"), server)
        live, replayed = live_and_replayed(server)
        assert live == replayed
    fired = [e for e in _records(store) if isinstance(e.event, TimerFired)]
    assert [r.event.name for r in fired].count(name) == 1
    rows = {row["reservation_id"]: row for row in chargeledger_cli("reservations", store=store)}
    assert {rows[ids[k]]["status"] for k in ("used", "cancelled", "rejected", "expired")} == {
        "used",
        "cancelled",
        "rejected",
        "expired",
    }
    assert rows[ids["rearmed"]]["status"] == "expired"


def test_v201_used_and_ended_by_the_station(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'reservations201.db'}"
    station = "CP-R201"

    async def scenario(server: RunningServer) -> None:
        cp, ws, task = await test_e2e_v201.connect(server, station)
        try:
            await cp.boot()
            expiry = rfc3339(time.time() + 600)
            made = await reserve(server, station, id_token="TAG-A", expiry=expiry, evse_id=1)
            used_id = made.values["reservation_id"]
            await cp.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=NOW,
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info={"transaction_id": "T-R1"},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": "TAG-A", "type": "ISO14443"},
                    reservation_id=used_id,
                )
            )
            assert (await status_is(server, station, used_id, "used")).transaction_id == "T-R1"
            for update, status in (("Expired", "expired"), ("Removed", "cancelled")):
                made = await reserve(server, station, id_token="TAG-B", expiry=expiry, evse_id=2)
                reservation_id = made.values["reservation_id"]
                assert reservation(server, station, reservation_id).evse_id == 2
                answer = await cp.call(
                    call201.ReservationStatusUpdate(
                        reservation_id=reservation_id, reservation_update_status=update
                    )
                )
                assert answer is not None  # answered, no longer NotSupported
                ended = await status_is(server, station, reservation_id, status)
                assert ended.ended_by == "station"
            whole = await reserve(server, station, id_token="TAG-C", expiry=expiry)
            assert reservation(server, station, whole.values["reservation_id"]).evse_id is None
        finally:
            task.cancel()
            await ws.close()

    with running_server(Settings(port=0, store=store)) as server:
        _asyncio(scenario, server)
        live, replayed = live_and_replayed(server)
        assert live == replayed
        assert server.csms is not None
        views = Views.replay(server.csms.store.iter_all())
    # `chargeledger replay --save` keeps every reservation, keyed by station and id.
    rows = snapshot(views)["projections"]["reservations"]
    assert len(rows) == len(views.reservations.all()) == 4


def _asyncio(scenario: Any, server: RunningServer) -> Any:
    return asyncio.run(scenario(server))


def _records(store: str) -> list[Any]:
    opened = open_store(store)
    try:
        return list(opened.iter_all())
    finally:
        opened.close()


def test_a_timer_started_again_is_re_armed_and_fires_once(tmp_path: Path) -> None:
    """``StartTimer`` of a pending name replaces its due time: one ``TimerFired``, at the
    new due time; a due time in the past fires at once."""
    store = f"sqlite:///{tmp_path / 'timers.db'}"

    def fired(server: RunningServer) -> list[TimerFired]:
        assert server.csms is not None
        return [r.event for r in server.csms.store.iter_all() if isinstance(r.event, TimerFired)]

    with running_server(Settings(port=0, store=store)) as server:
        assert server.csms is not None

        async def start(*commands: StartTimer) -> None:
            server.csms.gateway.execute(list(commands))  # type: ignore[union-attr]

        now = time.time()
        server.run(partial(start, StartTimer("t:a", now + 600), StartTimer("t:b", now - 5)))
        wait_for(lambda: fired(server), what="the overdue timer firing")
        server.run(partial(start, StartTimer("t:a", time.time() + 0.2)))
        wait_for(lambda: len(fired(server)) == 2, what="the re-armed timer firing")
        overdue, re_armed = fired(server)
        assert (overdue.name, overdue.due) == ("t:b", now - 5)
        assert re_armed.name == "t:a" and now < re_armed.due < now + 600
        # The store holds the TimerFired before the dispatcher has folded it into the views.
        views = server.csms.views
        wait_for(lambda: views.timers.pending() == {}, what="the fired timers folded")
