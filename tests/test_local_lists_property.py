"""Property: whatever the registry changes, list pushes and station answers (``Accepted``,
``VersionMismatch``, ``Failed``), the CSMS's view of each station's local list is what the
station was last told and acknowledged, and a replay of the log gives the same view.

The log is built here as the core records it (the station's session, its frames, the
registry and list events) and folded by ``Views``; the local_list plugin's react hook decides
every SendLocalList, and a model station (1.6 and 2.0.1) answers it."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.core.commands import SendCall
from chargeledger.core.events import (
    Event,
    FrameLogged,
    LocalListDefined,
    LocalListPushRequested,
    Recorded,
    SessionOpened,
    TokenRegistered,
    TokenRemoved,
)
from chargeledger.core.settings import Settings
from chargeledger.plugins import local_list
from chargeledger.projections import Views
from chargeledger.projections.local_lists import (
    ListEntry,
    ListPlan,
    StationListState,
    changes,
    entry_wire,
    plan_update,
    read_entry,
)
from chargeledger.schemas import OCPP16, OCPP201

STATIONS = {"CP-16": OCPP16, "CS-201": OCPP201}
TOKENS = [f"TAG-{n}" for n in range(6)]
SETTINGS = Settings(plugins={"local_list": {"items_per_message": 2}})


class ModelStation:
    """A station that applies what it accepts, answering the statuses it is scripted to.
    Scripted to answer ``VersionMismatch``, it lost its list (as after a reset): it then
    answers every differential update ``VersionMismatch`` until a full one arrives."""

    def __init__(self, protocol: str, answers: list[str]) -> None:
        self.protocol = protocol
        self.version = 0
        self.entries: dict[str, Any] = {}
        self.answers = deque(answers)
        self.lost = False

    def answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "GetLocalListVersion":
            key = "listVersion" if self.protocol == OCPP16 else "versionNumber"
            return {key: self.version}
        assert action == "SendLocalList"
        if self.lost and payload["updateType"] == "Differential":
            return {"status": "VersionMismatch"}
        status = self.answers.popleft() if self.answers else "Accepted"
        if status == "VersionMismatch":
            self.lost, self.version, self.entries = True, 0, {}
        if status == "Accepted":
            self.lost = False
            if payload["updateType"] == "Full":
                self.entries = {}
            for item in payload.get("localAuthorizationList", []):
                entry = read_entry(self.protocol, item)
                assert entry is not None
                if entry.status is None:
                    self.entries.pop(entry.id_token, None)
                else:
                    self.entries[entry.id_token] = entry
            self.version = payload.get("listVersion", payload.get("versionNumber"))
        return {"status": status}


class Log:
    """The log under construction, folded live into ``views`` with the plugin reacting."""

    def __init__(self, stations: dict[str, ModelStation]) -> None:
        self.records: list[Recorded] = []
        self.views = Views()
        self.stations = stations
        self.at = 1_800_000_000.0
        self.commands: deque[SendCall] = deque()
        self.message_id = 0

    def append(self, event: Event) -> None:
        recorded = Recorded(len(self.records) + 1, "s", len(self.records) + 1, event)
        self.records.append(recorded)
        self.views.apply(recorded)
        for command in local_list.chargeledger_react(
            recorded, self.views.last_exchange, self.views, SETTINGS
        ):
            assert isinstance(command, SendCall)
            self.commands.append(command)

    def frame(self, station: str, direction: str, frame: list[Any]) -> None:
        self.at += 1
        text = json.dumps(frame)
        self.append(
            FrameLogged(
                station=station, session=station, at=self.at, direction=direction, text=text
            )
        )

    def connect(self, station: str) -> None:
        protocol = self.stations[station].protocol
        self.append(SessionOpened(station=station, session=station, at=self.at, protocol=protocol))
        boot = (
            {"chargePointVendor": "V", "chargePointModel": "M"}
            if protocol == OCPP16
            else {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
        )
        self.frame(station, "in", [2, "boot", "BootNotification", boot])
        answer = {"status": "Accepted", "currentTime": "2027-01-15T08:00:00Z", "interval": 300}
        self.frame(station, "out", [3, "boot", answer])

    def run_commands(self) -> None:
        """Carry out the plugin's commands, each answered by its station, until none is left
        (bounded: a plugin that never stops is a failure)."""
        for _ in range(500):
            if not self.commands:
                return
            command = self.commands.popleft()
            self.message_id += 1
            message_id = str(self.message_id)
            self.frame(command.station, "out", [2, message_id, command.action, command.payload])
            response = self.stations[command.station].answer(command.action, command.payload)
            self.frame(command.station, "in", [3, message_id, response])
        raise AssertionError("the plugin kept sending")

    def event(self, kind: type[Any], **fields: Any) -> None:
        self.at += 1
        self.append(kind(request_id=str(self.at), at=self.at, key="test", **fields))


operation = st.one_of(
    st.tuples(
        st.just("register"),
        st.sampled_from(TOKENS),
        st.sampled_from(["Accepted", "Blocked", "Expired"]),
        st.sampled_from([None, "G1", "G2"]),
    ),
    st.tuples(st.just("remove"), st.sampled_from(TOKENS)),
    st.tuples(st.just("push"), st.booleans()),
    st.tuples(st.just("define"), st.sampled_from(["all", "group"])),
)
answers = st.lists(st.sampled_from(["Accepted", "VersionMismatch", "Failed"]), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=25), answers, answers)
def test_the_view_is_what_each_station_acknowledged(
    operations: list[tuple[Any, ...]], answers_16: list[str], answers_201: list[str]
) -> None:
    stations = {
        "CP-16": ModelStation(OCPP16, answers_16),
        "CS-201": ModelStation(OCPP201, answers_201),
    }
    log = Log(stations)
    log.event(LocalListDefined, name="main", selection="all")
    for station in STATIONS:
        log.connect(station)
    log.run_commands()
    for op in operations:
        if op[0] == "register":
            log.event(TokenRegistered, id_token=op[1], status=op[2], group=op[3])
        elif op[0] == "remove":
            log.event(TokenRemoved, id_token=op[1])
        elif op[0] == "push":
            log.event(LocalListPushRequested, stations=sorted(STATIONS), full=op[1])
        else:
            log.event(LocalListDefined, name="main", selection=op[1], group="G1")
        log.run_commands()
    # a last push, answered Accepted from now on: everything must then be in sync
    for station in stations.values():
        station.answers.clear()
    log.event(LocalListPushRequested, stations=sorted(STATIONS))
    log.run_commands()

    views = log.views
    for name, station in stations.items():
        state = views.local_lists.get(name)
        assert state is not None and not state.pending
        assert state.acknowledged_version == (station.version or None)
        held = {entry.id_token: entry for entry in state.entries.values()}
        assert held == station.entries
        desired = views.local_lists.desired(name, station.protocol, views.tokens.all())
        assert {entry.id_token: entry for entry in desired.values()} == station.entries
        assert not views.local_lists.behind(name, station.protocol, views.tokens.all())
    replayed = Views.replay(log.records)
    assert replayed.local_lists.all() == views.local_lists.all()
    assert msgspec.json.encode(
        [d.name for d in replayed.local_lists.definitions()]
    ) == msgspec.json.encode([d.name for d in views.local_lists.definitions()])


def test_a_differential_update_carries_only_the_changes_in_chunks() -> None:
    held = {
        ("A", None): ListEntry(id_token="A"),
        ("B", None): ListEntry(id_token="B"),
        ("C", None): ListEntry(id_token="C", status="Blocked"),
    }
    desired = {
        ("B", None): ListEntry(id_token="B"),
        ("C", None): ListEntry(id_token="C"),
        ("D", None): ListEntry(id_token="D", group="G"),
    }
    assert changes(held, desired) == [
        ListEntry(id_token="C"),
        ListEntry(id_token="D", group="G"),
        ListEntry(id_token="A", status=None),
    ]
    state = StationListState(station="CP", sent_version=4, acknowledged_version=3, entries=held)
    plan = plan_update(state, desired, items_per_message=2)
    assert plan == ListPlan(
        version=5,
        update_type="Differential",
        entries=[ListEntry(id_token="C"), ListEntry(id_token="D", group="G")],
        remaining=1,
    )
    state.needs_full = True  # after a VersionMismatch: the whole list, first chunk Full
    plan = plan_update(state, desired, items_per_message=2)
    assert plan is not None and (plan.update_type, plan.remaining) == ("Full", 1)
    assert [entry.id_token for entry in plan.entries] == ["B", "C"]
    assert plan_update(None, {}, items_per_message=2) is None  # no list, none wanted


def test_entries_read_back_as_sent_in_both_versions() -> None:
    entry = ListEntry(
        id_token="A", type="eMAID", status="Blocked", expiry="2027-01-01T00:00:00Z", group="G"
    )
    removal = ListEntry(id_token="A", type="eMAID", status=None)
    for protocol in (OCPP16, OCPP201):
        expected = entry if protocol == OCPP201 else msgspec.structs.replace(entry, type=None)
        assert read_entry(protocol, entry_wire(protocol, entry)) == expected
        wire = entry_wire(protocol, removal)
        assert "idTagInfo" not in wire and "idTokenInfo" not in wire
        assert read_entry(protocol, wire) == msgspec.structs.replace(removal, type=expected.type)
    assert entry_wire(OCPP201, entry)["idTokenInfo"]["groupIdToken"] == {
        "idToken": "G",
        "type": "Central",
    }
