"""The stations and transactions projections: pinned scenarios and replay properties."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.core.events import (
    ALLOCATOR_STREAM,
    CallTimedOut,
    Direction,
    Event,
    FrameLogged,
    Recorded,
    SessionClosed,
    SessionOpened,
    TransactionIdsReserved,
    session_stream,
)
from chargeledger.projections import (
    ANOMALY_KINDS,
    StationsProjection,
    StationState,
    TransactionsProjection,
    TransactionState,
    Views,
    anomaly_json,
    station_json,
    transaction_json,
)
from chargeledger.projections._frames import MAX_PENDING_PER_SESSION, Correlator
from chargeledger.projections.transactions import energy_register_wh

__all__: list[str] = []

T = TypeVar("T")

T0 = 1_700_000_000.0
"""Event ``at`` is ``T0 + position``."""

STARTED = "2024-05-01T10:00:00Z"
START = {"connectorId": 1, "idTag": "TAG1", "timestamp": STARTED, "meterStart": 1000}


class Log:
    """Builds a log by hand: sessions, verbatim frames and CALL/answer pairs."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self._versions: dict[str, int] = {}
        self._message_ids = itertools.count(1)
        self._sessions = itertools.count(1)
        self.current: dict[str, str] = {}
        """Each station's newest session."""

    def add(self, event: Event) -> int:
        if isinstance(event, TransactionIdsReserved):
            stream = ALLOCATOR_STREAM
        else:
            stream = session_stream(event.session)
        version = self._versions.get(stream, 0)
        self._versions[stream] = version + 1
        position = len(self.records) + 1
        self.records.append(Recorded(position, stream, version, event))
        return position

    @property
    def at(self) -> float:
        return T0 + len(self.records) + 1

    def open(self, station: str, protocol: str = "ocpp1.6", node: str = "n1") -> str:
        session = f"{station}-s{next(self._sessions)}"
        self.current[station] = session
        self.add(
            SessionOpened(
                station=station, session=session, at=self.at, protocol=protocol, node=node
            )
        )
        return session

    def close(self, station: str, session: str | None = None, code: int = 1000) -> int:
        session = session or self.current[station]
        return self.add(SessionClosed(station=station, session=session, at=self.at, code=code))

    def frame(
        self, station: str, direction: Direction, text: str, session: str | None = None
    ) -> int:
        return self.add(
            FrameLogged(
                station=station,
                session=session or self.current[station],
                at=self.at,
                direction=direction,
                text=text,
            )
        )

    def call(
        self,
        station: str,
        action: str,
        payload: Any,
        result: Any = None,
        *,
        error: bool = False,
        by: Direction = "in",
        message_id: str | None = None,
    ) -> tuple[int, int | None]:
        """A CALL sent ``by`` the station (``in``) or us (``out``), then its answer: a
        CALLRESULT with ``result``, a CALLERROR with ``error``, or none when ``result`` is
        ``None``. Returns the positions of both frames."""
        message_id = message_id or f"m{next(self._message_ids)}"
        answer_by: Direction = "out" if by == "in" else "in"
        call_position = self.frame(station, by, _text([2, message_id, action, payload]))
        if error:
            return call_position, self.frame(
                station, answer_by, _text([4, message_id, "InternalError", "", {}])
            )
        if result is None:
            return call_position, None
        return call_position, self.frame(station, answer_by, _text([3, message_id, result]))

    def start(self, station: str, transaction_id: int, **changes: Any) -> tuple[int, int | None]:
        return self.call(
            station,
            "StartTransaction",
            START | changes,
            {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}},
        )

    def stop(self, station: str, transaction_id: int, meter_stop: int) -> int | None:
        payload = {"transactionId": transaction_id, "meterStop": meter_stop, "timestamp": "t"}
        return self.call(station, "StopTransaction", payload, {})[1]

    def meter(self, station: str, transaction_id: int, *samples: dict[str, Any]) -> int | None:
        payload = {
            "connectorId": 1,
            "transactionId": transaction_id,
            "meterValue": [{"timestamp": "2024-05-01T10:30:00Z", "sampledValue": list(samples)}],
        }
        return self.call(station, "MeterValues", payload, {})[1]

    def views(self) -> Views:
        return Views.replay(self.records)


def _text(frame: list[Any]) -> str:
    return msgspec.json.encode(frame).decode()


def _boot(log: Log, station: str, status: str = "Accepted", **request: Any) -> None:
    payload = {"chargePointVendor": "ACME", "chargePointModel": "X1"} | request
    answer = {"status": status, "currentTime": "2024-05-01T10:00:00Z", "interval": 300}
    log.call(station, "BootNotification", payload, answer)


def _some(value: T | None) -> T:
    assert value is not None
    return value


def _station(log: Log, station: str = "CP1") -> StationState:
    return _some(log.views().stations.get(station))


def _transaction(log: Log, transaction_id: int) -> TransactionState:
    return _some(log.views().transactions.get(transaction_id))


def _kinds(anomalies: list[Any]) -> list[str]:
    return [anomaly.kind for anomaly in anomalies]


# -------------------------------------------------------------------------
# Stations
# -------------------------------------------------------------------------


def test_boot_answered_fills_boot_info() -> None:
    log = Log()
    log.open("CP1")
    _boot(
        log,
        "CP1",
        chargePointSerialNumber="S" * 40,  # overlong, kept as sent
        chargeBoxSerialNumber="B1",
        firmwareVersion="1.2",
        iccid="I",
        imsi="M",
        meterType="MT",
        meterSerialNumber="MS",
    )
    state = _station(log)
    assert state is not None and state.boot is not None
    assert state.accepted
    assert (state.boot.vendor, state.boot.model, state.boot.serial_number) == (
        "ACME",
        "X1",
        "S" * 40,
    )
    assert state.boot.charge_box_serial_number == "B1"
    assert (state.boot.firmware_version, state.boot.iccid, state.boot.imsi) == ("1.2", "I", "M")
    assert (state.boot.meter_type, state.boot.meter_serial_number) == ("MT", "MS")
    assert (state.boot.status, state.boot.interval, state.boot.at) == ("Accepted", 300, T0 + 3)


def test_accepted_survives_reconnect_until_another_boot_status() -> None:
    log = Log()
    log.open("CP1")
    _boot(log, "CP1")
    log.close("CP1")
    log.open("CP1")
    assert _station(log).accepted
    _boot(log, "CP1", "Pending")
    state = _station(log)
    assert not state.accepted and _some(state.boot).status == "Pending"
    _boot(log, "CP1", "Rejected")
    assert _some(_station(log).boot).status == "Rejected"


def test_call_changes_state_only_when_answered_with_a_callresult() -> None:
    log = Log()
    log.open("CP1")
    log.call("CP1", "BootNotification", {"chargePointVendor": "A", "chargePointModel": "B"})
    assert _station(log).boot is None
    log.call(
        "CP1", "BootNotification", {"chargePointVendor": "A", "chargePointModel": "B"}, error=True
    )
    assert _station(log).boot is None
    # An answer in another session (same message id) answers nothing.
    log.call("CP1", "Heartbeat", {}, message_id="x")
    old = log.current["CP1"]
    log.close("CP1")
    log.open("CP1")
    log.frame("CP1", "out", _text([3, "x", {"currentTime": "2024-05-01T10:00:00Z"}]))
    log.frame("CP1", "out", _text([3, "x", {}]), session=old)
    assert _station(log).last_heartbeat is None


def test_station_calls_answered_by_the_station() -> None:
    log = Log()
    log.open("CP1")
    log.call(
        "CP1",
        "GetConfiguration",
        {},
        {
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                {"key": "NumberOfConnectors", "readonly": True, "value": 2},
                {"key": "Old", "readonly": False},
            ]
        },
        by="out",
    )
    config = _station(log).configuration
    assert sorted(config) == ["HeartbeatInterval", "NumberOfConnectors", "Old"]
    assert config["NumberOfConnectors"].value == "2" and config["NumberOfConnectors"].readonly
    assert config["Old"].value is None
    change = {"key": "HeartbeatInterval", "value": "60"}
    log.call("CP1", "ChangeConfiguration", change, {"status": "Rejected"}, by="out")
    log.call("CP1", "ChangeConfiguration", change | {"value": "90"}, error=True, by="out")
    assert _station(log).configuration["HeartbeatInterval"].value == "300"
    log.call("CP1", "ChangeConfiguration", change, {"status": "Accepted"}, by="out")
    assert _station(log).configuration["HeartbeatInterval"].value == "60"
    log.call(
        "CP1",
        "ChangeConfiguration",
        {"key": "Nope", "value": "1"},
        {"status": "NotSupported"},
        by="out",
    )
    log.call(
        "CP1",
        "GetConfiguration",
        {"key": ["Old", "Missing"]},
        {"configurationKey": [], "unknownKey": ["Old", "Missing"]},
        by="out",
    )
    state = _station(log)
    assert state is not None
    assert state.unknown_configuration_keys == ["Missing", "Nope", "Old"]
    assert sorted(state.configuration) == ["HeartbeatInterval", "NumberOfConnectors"]
    # A full listing replaces the keys; a key listed again is no longer unknown.
    log.call(
        "CP1",
        "GetConfiguration",
        {},
        {"configurationKey": [{"key": "Old", "readonly": False, "value": "x"}]},
        by="out",
    )
    state = _station(log)
    assert state is not None
    assert list(state.configuration) == ["Old"]
    assert state.unknown_configuration_keys == ["Missing", "Nope"]


def test_reboot_required_change_is_stored() -> None:
    log = Log()
    log.open("CP1")
    change = {"key": "MeterValueSampleInterval", "value": "30"}
    log.call("CP1", "ChangeConfiguration", change, {"status": "RebootRequired"}, by="out")
    assert _station(log).configuration["MeterValueSampleInterval"].value == "30"


def test_answer_after_timeout_is_ignored() -> None:
    log = Log()
    session = log.open("CP1")
    log.call("CP1", "GetConfiguration", {}, by="out", message_id="g1")
    log.add(
        CallTimedOut(
            station="CP1", session=session, at=log.at, message_id="g1", action="GetConfiguration"
        )
    )
    log.frame("CP1", "in", _text([3, "g1", {"configurationKey": [{"key": "K", "readonly": True}]}]))
    assert _station(log).configuration == {}


def test_status_notification_per_connector_and_heartbeat() -> None:
    log = Log()
    log.open("CP1")
    for connector, status in ((0, "Available"), (1, "Charging"), (1, "Faulted")):
        log.call(
            "CP1",
            "StatusNotification",
            {
                "connectorId": connector,
                "status": status,
                "errorCode": "NoError" if status != "Faulted" else "GroundFailure",
                "info": "i",
                "vendorId": "v",
                "vendorErrorCode": "E7",
                "timestamp": "2024-05-01T10:00:00Z",
            },
            {},
        )
    log.call("CP1", "Heartbeat", {}, {"currentTime": "2024-05-01T10:00:00Z"})
    state = _station(log)
    assert state is not None
    assert sorted(state.connectors) == [0, 1]
    assert state.connectors[0].status == "Available"
    assert (state.connectors[1].status, state.connectors[1].error_code) == (
        "Faulted",
        "GroundFailure",
    )
    assert state.connectors[1].vendor_error_code == "E7" and state.connectors[1].at == T0 + 7
    assert state.last_heartbeat == T0 + 9 and state.last_seen == T0 + 8


def test_any_inbound_frame_is_seen_even_garbage() -> None:
    log = Log()
    log.open("CP1")
    log.frame("CP1", "in", "not json at all")
    log.frame("CP1", "out", "[3,")
    state = _station(log)
    assert state is not None and state.last_seen == T0 + 2


def test_newest_session_wins_and_late_close_of_the_old_one_is_ignored() -> None:
    log = Log()
    first = log.open("CP1", node="n1")
    second = log.open("CP1", node="n2")
    log.close("CP1", first, code=4000)
    state = _station(log)
    assert state is not None
    assert (state.connected, state.session, state.node) == (True, second, "n2")
    assert state.last_close_code is None
    log.close("CP1", second, code=1006)
    state = _station(log)
    assert state is not None
    assert (state.connected, state.session, state.last_close_code) == (False, None, 1006)
    assert (state.connected_at, state.disconnected_at) == (T0 + 2, T0 + 4)


def test_ocpp201_boot() -> None:
    log = Log()
    log.open("CP2", protocol="ocpp2.0.1")
    log.call(
        "CP2",
        "BootNotification",
        {
            "reason": "PowerUp",
            "chargingStation": {
                "model": "M",
                "vendorName": "V",
                "serialNumber": "S",
                "firmwareVersion": "F",
                "modem": {"iccid": "I", "imsi": "X"},
            },
        },
        {"status": "Accepted", "currentTime": "2024-05-01T10:00:00Z", "interval": 60},
    )
    state = log.views().stations.get("CP2")
    assert state is not None and state.boot is not None and state.accepted
    assert state.protocol == "ocpp2.0.1"
    boot = state.boot
    assert (boot.vendor, boot.model, boot.serial_number, boot.firmware_version) == (
        "V",
        "M",
        "S",
        "F",
    )
    assert (boot.iccid, boot.imsi, boot.reason, boot.interval) == ("I", "X", "PowerUp", 60)


GARBAGE = [
    "",
    "[",
    "null",
    "{}",
    "[]",
    "[2]",
    '[2,"a"]',
    '[2,"a",5,{}]',
    '[2,1,"Heartbeat",{}]',
    '[3,"a"]',
    '[true,"a","Heartbeat",{}]',
    '[9,"a","x"]',
    "\ud800",
    "[" * 100_000,
    "1" * 5000,
    '[2,"b","BootNotification",[1,2]]',
    '[2,"c","StartTransaction",{"connectorId":[1],"idTag":{},"meterStart":"x"}]',
    '[2,"d","StatusNotification",{"connectorId":true}]',
    '[2,"e","MeterValues",{"transactionId":1,"meterValue":[1,{"sampledValue":5}]}]',
]


def test_malformed_frames_and_payloads_never_raise() -> None:
    log = Log()
    log.open("CP1")
    for text in GARBAGE:
        log.frame("CP1", "in", text)
        log.frame("CP1", "out", text)
    # Answers whose payloads are not what the CALL implies.
    for message_id in "bcde":
        log.frame("CP1", "out", _text([3, message_id, {"transactionId": "7", "status": 1}]))
    log.start("CP1", 1)
    log.call("CP1", "MeterValues", {"transactionId": 1, "meterValue": "x"}, [])
    log.call("CP1", "MeterValues", {"transactionId": 1, "meterValue": [{"sampledValue": [3]}]}, {})
    huge = 10**400  # valid for the schema: JSON integers have no size limit
    log.start("CP1", 2, meterStart=-huge)
    log.meter("CP1", 2, {"value": str(huge)}, {"value": huge})
    log.stop("CP1", 2, huge)
    views = log.views()
    assert [t.transaction_id for t in views.transactions.all()] == [1, 2]
    assert _some(views.transactions.get(2)).energy_wh is None
    assert _some(views.stations.get("CP1")).connectors == {}


def test_pending_calls_are_bounded_and_forgotten_at_close() -> None:
    log = Log()
    log.open("CP1")
    for index in range(MAX_PENDING_PER_SESSION + 1):
        log.call("CP1", "Heartbeat", {}, message_id=f"h{index}")
    log.frame("CP1", "out", _text([3, "h0", {}]))  # the oldest was forgotten
    assert _station(log).last_heartbeat is None
    log.frame("CP1", "out", _text([3, "h1", {}]))
    assert _station(log).last_heartbeat is not None
    correlator = Correlator()
    for recorded in log.records:
        correlator.feed(recorded)
    log.close("CP1")
    correlator.feed(log.records[-1])
    assert correlator._sessions == {} and correlator._by_station == {}


def test_sessions_never_closed_are_bounded_per_station() -> None:
    log = Log()
    for _ in range(5):
        log.open("CP1")  # a crashed node records no SessionClosed
        log.call("CP1", "Heartbeat", {})
    correlator = Correlator()
    for recorded in log.records:
        correlator.feed(recorded)
    assert len(correlator._sessions) == 2


# -------------------------------------------------------------------------
# Transactions
# -------------------------------------------------------------------------


def test_start_creates_the_transaction() -> None:
    log = Log()
    log.open("CP1")
    call_position, result_position = log.start("CP1", 7)
    transactions = log.views().transactions
    transaction = transactions.get(7)
    assert transaction is not None
    assert (transaction.station, transaction.protocol, transaction.status) == (
        "CP1",
        "ocpp1.6",
        "active",
    )
    assert (transaction.connector_id, transaction.id_tag, transaction.id_tag_status) == (
        1,
        "TAG1",
        "Accepted",
    )
    assert (transaction.start_timestamp, transaction.meter_start) == (STARTED, 1000)
    assert transaction.started_position == result_position
    assert transaction.positions == [call_position, result_position]
    assert transaction.energy_wh is None and transaction.anomalies == []
    assert transactions.active_on("CP1", 1) is transaction
    assert transactions.active_on("CP1", 2) is None
    assert transactions.find_start("CP1", 1, "TAG1", STARTED, 1000) is transaction


def test_find_start_compares_the_timestamp_as_an_instant() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7, timestamp="2024-05-01T10:00:00.000Z")
    transactions = log.views().transactions
    instant = datetime(2024, 5, 1, 10, tzinfo=UTC)
    for timestamp in ("2024-05-01T10:00:00Z", "2024-05-01T12:00:00+02:00", instant):
        assert transactions.find_start("CP1", 1, "TAG1", timestamp, 1000) is transactions.get(7)
    assert transactions.find_start("CP1", 1, "TAG1", "2024-05-01T10:00:01Z", 1000) is None
    assert transactions.find_start("CP1", 1, "TAG1", instant, 1001) is None
    assert transactions.find_start("CP9", 1, "TAG1", instant, 1000) is None


def test_start_answered_with_an_error_creates_nothing() -> None:
    log = Log()
    log.open("CP1")
    log.call("CP1", "StartTransaction", START, error=True)
    log.call("CP1", "StartTransaction", START)
    assert log.views().transactions.all() == []


def test_retransmitted_start_answered_with_the_same_id() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    before = msgspec.structs.replace(_transaction(log, 7))
    log.close("CP1")
    log.open("CP1")
    _, again = log.start("CP1", 7)
    transaction = _transaction(log, 7)
    assert transaction is not None
    assert _kinds(transaction.anomalies) == ["start_retransmitted"]
    assert transaction.anomalies[0].position == again
    assert msgspec.structs.replace(transaction, anomalies=[]) == before
    assert len(log.views().transactions.all()) == 1


def test_transaction_id_reused_never_overwrites() -> None:
    log = Log()
    log.open("CP1")
    log.open("CP2")
    log.start("CP1", 7)
    _, reused = log.start("CP2", 7, idTag="OTHER")
    views = log.views()
    transaction = views.transactions.get(7)
    assert transaction is not None
    assert (transaction.station, transaction.id_tag) == ("CP1", "TAG1")
    [anomaly] = transaction.anomalies
    assert (anomaly.kind, anomaly.position, anomaly.station, anomaly.transaction_id) == (
        "transaction_id_reused",
        reused,
        "CP2",
        7,
    )
    assert views.transactions.active_on("CP2", 1) is None
    assert views.transactions.find_start("CP2", 1, "OTHER", STARTED, 1000) is None


def test_duplicate_start_with_a_second_id_is_flagged_on_the_later_one() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    log.start("CP1", 8)
    transactions = log.views().transactions
    assert _some(transactions.get(7)).anomalies == []
    [anomaly] = _some(transactions.get(8)).anomalies
    assert anomaly.kind == "duplicate_start" and "transaction 7" in anomaly.detail
    assert transactions.find_start("CP1", 1, "TAG1", STARTED, 1000) is transactions.get(7)
    assert [t.transaction_id for t in transactions.all()] == [7, 8]
    # A retransmission of the later start answered with the later id is a retransmission.
    log.start("CP1", 8)
    assert _kinds(_transaction(log, 8).anomalies) == [
        "duplicate_start",
        "start_retransmitted",
    ]


def test_stop_ends_the_transaction() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    call_position, _ = log.call(
        "CP1",
        "StopTransaction",
        {
            "transactionId": 7,
            "meterStop": 3500,
            "timestamp": "2024-05-01T11:00:00Z",
            "reason": "EVDisconnected",
        },
        {},
    )
    transactions = log.views().transactions
    transaction = transactions.get(7)
    assert transaction is not None
    assert (transaction.status, transaction.meter_stop, transaction.energy_wh) == (
        "ended",
        3500,
        2500.0,
    )
    assert (transaction.stop_timestamp, transaction.stop_reason) == (
        "2024-05-01T11:00:00Z",
        "EVDisconnected",
    )
    assert transaction.ended_at == T0 + call_position + 1
    assert transaction.positions[-2:] == [call_position, call_position + 1]
    assert transactions.active_on("CP1", 1) is None
    assert transactions.find_start("CP1", 1, "TAG1", STARTED, 1000) is transaction


def test_stop_answered_with_an_error_changes_nothing() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    log.call("CP1", "StopTransaction", {"transactionId": 7, "meterStop": 3500}, error=True)
    assert _transaction(log, 7).status == "active"


def test_meter_stop_below_start() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    log.stop("CP1", 7, 900)
    transaction = _transaction(log, 7)
    assert transaction is not None
    assert (transaction.status, transaction.meter_stop, transaction.energy_wh) == (
        "ended",
        900,
        None,
    )
    assert _kinds(transaction.anomalies) == ["meter_stop_below_start"]


def test_duplicate_stop_is_not_counted_twice() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    log.stop("CP1", 7, 2000)
    before = msgspec.structs.replace(_transaction(log, 7))
    second = log.stop("CP1", 7, 9000)
    transaction = _transaction(log, 7)
    assert transaction is not None
    assert (transaction.meter_stop, transaction.energy_wh) == (2000, 1000.0)
    [anomaly] = transaction.anomalies
    assert (anomaly.kind, anomaly.position) == ("duplicate_stop", second)
    assert msgspec.structs.replace(transaction, anomalies=[]) == before


def test_stop_from_another_station_leaves_the_transaction_alone() -> None:
    log = Log()
    log.open("CP1")
    log.open("CP2")
    log.start("CP1", 7)
    position = log.stop("CP2", 7, 5000)
    transactions = log.views().transactions
    transaction = transactions.get(7)
    assert (
        transaction is not None and transaction.status == "active" and transaction.anomalies == []
    )
    [anomaly] = transactions.anomalies
    assert (anomaly.kind, anomaly.position, anomaly.station, anomaly.transaction_id) == (
        "stop_from_other_station",
        position,
        "CP2",
        7,
    )


@pytest.mark.parametrize("transaction_id", [-1, 0, 2**31, 2**63 - 1, -5])
def test_sentinel_stop(transaction_id: int) -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    log.stop("CP1", transaction_id, 5000)
    transactions = log.views().transactions
    assert [(a.kind, a.transaction_id) for a in transactions.anomalies] == [
        ("sentinel_transaction_id", transaction_id)
    ]
    assert _some(transactions.get(7)).status == "active"


def test_stop_for_unknown_transaction() -> None:
    log = Log()
    log.open("CP1")
    log.stop("CP1", 12345, 5000)
    log.stop("CP1", 12345, 5000)
    transactions = log.views().transactions
    assert _kinds(transactions.anomalies) == ["stop_for_unknown_transaction"] * 2
    assert transactions.all() == []


def test_meter_values_update_the_active_transaction() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    first = log.meter("CP1", 7, {"value": "1500"})  # measurand and unit default to the register
    transaction = _transaction(log, 7)
    assert transaction is not None
    assert (transaction.meter_last_wh, transaction.energy_wh) == (1500.0, 500.0)
    assert first in transaction.positions
    log.meter(
        "CP1", 7, {"value": "2.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"}
    )
    assert _transaction(log, 7).energy_wh == 1500.0
    log.meter("CP1", 7, {"value": "30", "measurand": "Power.Active.Import", "unit": "W"})
    assert _transaction(log, 7).meter_last_wh == 2500.0
    log.stop("CP1", 7, 4000)
    transaction = _transaction(log, 7)
    assert transaction is not None
    assert (transaction.meter_last_wh, transaction.energy_wh) == (2500.0, 3000.0)


def test_meter_values_after_stop_are_not_applied_and_flagged_once() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    log.stop("CP1", 7, 4000)
    log.meter("CP1", 7, {"value": "9000"})
    log.meter("CP1", 7, {"value": "9500"})
    transaction = _transaction(log, 7)
    assert transaction is not None
    assert (transaction.meter_last_wh, transaction.energy_wh) == (None, 3000.0)
    assert _kinds(transaction.anomalies) == ["meter_values_after_stop"]


def test_meter_values_for_unknown_or_foreign_transaction_flagged_once_per_station_and_id() -> None:
    log = Log()
    log.open("CP1")
    log.open("CP2")
    log.start("CP1", 7)
    for _ in range(3):
        log.meter("CP2", 7, {"value": "9000"})
        log.meter("CP2", 99, {"value": "9000"})
        log.meter("CP1", 99, {"value": "9000"})
    transactions = log.views().transactions
    assert [(a.kind, a.station, a.transaction_id) for a in transactions.anomalies] == [
        ("meter_values_for_unknown_transaction", "CP2", 7),
        ("meter_values_for_unknown_transaction", "CP2", 99),
        ("meter_values_for_unknown_transaction", "CP1", 99),
    ]
    assert _some(transactions.get(7)).meter_last_wh is None


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([{"value": "100"}], 100.0),
        ([{"value": "1.5", "unit": "kWh"}], 1500.0),
        (
            [
                {"value": "10", "phase": "L1"},
                {"value": "20", "phase": "L2"},
                {"value": "5", "phase": "N"},
            ],
            30.0,
        ),
        ([{"value": "10", "phase": "L1"}, {"value": "99"}, {"value": "20", "phase": "L2"}], 99.0),
        ([{"value": "abc", "format": "SignedData"}, {"value": "7"}], 7.0),
        ([{"value": "abc", "format": "SignedData"}], None),
        ([{"value": "5", "location": "EV"}], None),
        ([{"value": "5", "unit": "Hz"}], None),
        ([{"value": "nan"}, {"value": "inf"}, {"value": "x"}, {"value": True}], None),
        ([{"value": 42}], 42.0),
        ([{"value": "5", "measurand": "Energy.Active.Export.Register"}], None),
    ],
)
def test_energy_register_reading(samples: list[dict[str, Any]], expected: float | None) -> None:
    assert energy_register_wh([{"timestamp": "t", "sampledValue": samples}]) == expected


def test_energy_register_last_meter_value_with_a_reading_wins() -> None:
    values = [
        {"sampledValue": [{"value": "1"}]},
        {"sampledValue": [{"value": "2"}]},
        {"sampledValue": [{"value": "3", "measurand": "Voltage"}]},
    ]
    assert energy_register_wh(values) == 2.0


def test_ocpp201_sessions_are_not_folded_with_16_transaction_rules() -> None:
    log = Log()
    log.open("CP2", protocol="ocpp2.0.1")
    log.start("CP2", 7)
    log.stop("CP2", 99, 1)
    views = log.views()
    assert views.transactions.all() == [] and views.transactions.anomalies == []


# -------------------------------------------------------------------------
# Views and JSON
# -------------------------------------------------------------------------


def test_station_json() -> None:
    log = Log()
    log.open("CP1")
    _boot(log, "CP1")
    log.call(
        "CP1",
        "StatusNotification",
        {"connectorId": 1, "status": "Available", "errorCode": "NoError"},
        {},
    )
    log.call(
        "CP1",
        "GetConfiguration",
        {},
        {"configurationKey": [{"key": "K", "readonly": True, "value": "v"}]},
        by="out",
    )
    document = station_json(_station(log))
    assert list(document) == [
        "station",
        "protocol",
        "connected",
        "session",
        "node",
        "connected_at",
        "disconnected_at",
        "last_close_code",
        "boot",
        "accepted",
        "last_heartbeat",
        "last_seen",
        "connectors",
        "configuration",
        "unknown_configuration_keys",
    ]
    assert document["connected_at"] == "2023-11-14T22:13:21.000Z"
    assert (
        document["boot"]["status"] == "Accepted"
        and document["boot"]["at"] == "2023-11-14T22:13:23.000Z"
    )
    assert document["connectors"] == {
        "1": {
            "status": "Available",
            "error_code": "NoError",
            "info": None,
            "vendor_id": None,
            "vendor_error_code": None,
            "timestamp": None,
            "at": "2023-11-14T22:13:25.000Z",
        }
    }
    assert document["configuration"] == {
        "K": {"value": "v", "readonly": True, "at": "2023-11-14T22:13:27.000Z"}
    }
    assert msgspec.json.decode(msgspec.json.encode(document)) == document


def test_transaction_json() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)
    log.stop("CP1", 7, 900)
    document = transaction_json(_transaction(log, 7))
    assert list(document) == [
        "transaction_id",
        "station",
        "protocol",
        "connector_id",
        "evse_id",
        "id_tag",
        "id_tag_status",
        "status",
        "start_timestamp",
        "stop_timestamp",
        "meter_start",
        "meter_stop",
        "meter_last_wh",
        "energy_wh",
        "stop_reason",
        "started_at",
        "ended_at",
        "started_position",
        "positions",
        "anomalies",
    ]
    assert (document["transaction_id"], document["station"], document["status"]) == (
        7,
        "CP1",
        "ended",
    )
    assert document["energy_wh"] is None and document["started_at"] == "2023-11-14T22:13:23.000Z"
    assert document["anomalies"] == [
        {
            "kind": "meter_stop_below_start",
            "position": 5,
            "detail": "meterStop 900 < meterStart 1000",
            "station": "CP1",
            "transaction_id": 7,
        }
    ]
    assert msgspec.json.decode(msgspec.json.encode(document)) == document


# -------------------------------------------------------------------------
# Replay properties
# -------------------------------------------------------------------------

STATIONS = ("CP1", "CP2", "CP3")
TIMESTAMPS = ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000Z", "2024-05-01T11:00:00Z")
SENTINELS = (-1, 0, 2**31, 2**63 - 1)

station_index = st.sampled_from([0, 0, 0, 1, 1, 2])
answer = st.sampled_from(["result", "result", "result", "error", "none"])
OPERATIONS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "start": st.tuples(
        st.integers(1, 2),
        st.sampled_from(["A", "B"]),
        st.sampled_from(TIMESTAMPS),
        st.integers(0, 2000),
        answer,
        st.sampled_from([False, False, False, True]),
    ),
    "restart": st.tuples(st.integers(0, 100), st.booleans()),
    "stop": st.tuples(
        st.sampled_from(["own", "own", "own", "other", "sentinel", "unknown"]),
        st.integers(0, 100),
        st.integers(0, 5000),
        answer,
    ),
    "meter": st.tuples(
        st.sampled_from(["own", "own", "own", "other", "unknown"]),
        st.integers(0, 100),
        st.integers(0, 5000),
        st.sampled_from(["Wh", "kWh", "phases"]),
    ),
    "open": st.tuples(st.sampled_from(["ocpp1.6", "ocpp1.6", "ocpp2.0.1"])),
    "close": st.tuples(st.booleans()),
    "boot": st.tuples(st.sampled_from(["Accepted", "Pending", "Rejected"]), answer),
    "status": st.tuples(st.integers(0, 2), st.sampled_from(["Available", "Charging"])),
    "heartbeat": st.tuples(answer),
    "garbage": st.tuples(st.sampled_from(["in", "out"]), st.sampled_from(GARBAGE[:13])),
    "config": st.tuples(
        st.sampled_from(["get", "change"]), st.sampled_from(["result", "error", "timeout"])
    ),
    "orphan": st.tuples(st.text(max_size=3)),
    "reserve": st.tuples(st.integers(1, 1000)),
}
"""Each operation's arguments after the station index."""

WEIGHTED = ["start"] * 4 + ["stop"] * 3 + ["meter"] * 2 + sorted(OPERATIONS)
operation = st.sampled_from(WEIGHTED).flatmap(
    lambda kind: st.tuples(st.just(kind), station_index, OPERATIONS[kind]).map(
        lambda drawn: (drawn[0], drawn[1], *drawn[2])
    )
)


class Generated:
    """A log built from generated operations, and what the invariants need to know of it."""

    def __init__(self, operations: list[tuple[Any, ...]]) -> None:
        self.log = Log()
        self.protocols: dict[str, str] = {}
        self.open_sessions: dict[str, list[str]] = {station: [] for station in STATIONS}
        self.starts: list[tuple[str, dict[str, Any], int]] = []
        self.issued: list[tuple[str, int]] = []
        self.next_id = 1
        self.stops: dict[int, tuple[str, int, int]] = {}
        """Result position of each answered 1.6 stop: (station, id, meterStop)."""
        for operation in operations:
            getattr(self, f"_{operation[0]}")(*operation[1:])

    def _session(self, station: str) -> str:
        if not self.open_sessions[station]:
            self._open(STATIONS.index(station), "ocpp1.6")
        return self.log.current[station]

    def _v16(self, station: str) -> bool:
        return self.protocols[self.log.current[station]] == "ocpp1.6"

    def _open(self, index: int, protocol: str) -> None:
        station = STATIONS[index]
        session = self.log.open(station, protocol=protocol)
        self.protocols[session] = protocol
        self.open_sessions[station].append(session)

    def _close(self, index: int, oldest: bool) -> None:
        station = STATIONS[index]
        sessions = self.open_sessions[station]
        if sessions:
            self.log.close(station, sessions.pop(0 if oldest else -1))
            if sessions:
                # Frames go on in the newest session still open, as a station's would.
                self.log.current[station] = sessions[-1]

    def _call(
        self, station: str, action: str, payload: Any, result: Any, answer: str
    ) -> int | None:
        self._session(station)
        if answer == "error":
            self.log.call(station, action, payload, error=True)
            return None
        return self.log.call(station, action, payload, result if answer == "result" else None)[1]

    def _boot(self, index: int, status: str, answer: str) -> None:
        payload = {"chargePointVendor": "V", "chargePointModel": "M"}
        self._call(
            STATIONS[index],
            "BootNotification",
            payload,
            {"status": status, "currentTime": "t", "interval": 5},
            answer,
        )

    def _status(self, index: int, connector: int, status: str) -> None:
        payload = {"connectorId": connector, "status": status, "errorCode": "NoError"}
        self._call(STATIONS[index], "StatusNotification", payload, {}, "result")

    def _heartbeat(self, index: int, answer: str) -> None:
        self._call(STATIONS[index], "Heartbeat", {}, {"currentTime": "t"}, answer)

    def _start(
        self,
        index: int,
        connector: int,
        tag: str,
        timestamp: str,
        meter: int,
        answer: str,
        reuse: bool,
    ) -> None:
        station = STATIONS[index]
        payload = {
            "connectorId": connector,
            "idTag": tag,
            "timestamp": timestamp,
            "meterStart": meter,
        }
        self._issue(station, payload, reuse and bool(self.issued), answer)

    def _restart(self, index: int, which: int, same_id: bool) -> None:
        mine = [start for start in self.starts if start[0] == STATIONS[index]]
        if mine:
            station, payload, transaction_id = mine[which % len(mine)]
            self._issue(station, payload, False, "result", transaction_id if same_id else None)

    def _issue(
        self,
        station: str,
        payload: dict[str, Any],
        reuse: bool,
        answer: str,
        given_id: int | None = None,
    ) -> None:
        if given_id is not None:
            transaction_id = given_id
        elif reuse:
            transaction_id = self.issued[len(self.issued) // 2][1]
        else:
            transaction_id = self.next_id
            self.next_id += 1
        result = {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
        position = self._call(station, "StartTransaction", payload, result, answer)
        if position is not None and self._v16(station):
            self.starts.append((station, payload, transaction_id))
            self.issued.append((station, transaction_id))

    def _target(self, station: str, target: str, which: int) -> int:
        mine = [tid for owner, tid in self.issued if owner == station]
        others = [tid for owner, tid in self.issued if owner != station]
        if target == "own" and mine:
            return mine[which % len(mine)]
        if target == "other" and others:
            return others[which % len(others)]
        if target == "sentinel":
            return SENTINELS[which % len(SENTINELS)]
        return 10_000 + which

    def _stop(self, index: int, target: str, which: int, meter: int, answer: str) -> None:
        station = STATIONS[index]
        transaction_id = self._target(station, target, which)
        payload = {"transactionId": transaction_id, "meterStop": meter, "timestamp": "t"}
        position = self._call(station, "StopTransaction", payload, {}, answer)
        if position is not None and self._v16(station):
            self.stops[position] = (station, transaction_id, meter)

    def _meter(self, index: int, target: str, which: int, value: int, unit: str) -> None:
        station = STATIONS[index]
        if unit == "phases":
            samples = [{"value": str(value), "phase": phase} for phase in ("L1", "L2", "L3")]
        else:
            samples = [{"value": str(value / 1000 if unit == "kWh" else value), "unit": unit}]
        payload = {
            "connectorId": 1,
            "transactionId": self._target(station, target, which),
            "meterValue": [{"timestamp": "t", "sampledValue": samples}],
        }
        self._call(station, "MeterValues", payload, {}, "result")

    def _garbage(self, index: int, direction: Direction, text: str) -> None:
        station = STATIONS[index]
        self._session(station)
        self.log.frame(station, direction, text)

    def _config(self, index: int, action: str, answer: str) -> None:
        station = STATIONS[index]
        session = self._session(station)
        if action == "get":
            payload: dict[str, Any] = {}
            result: dict[str, Any] = {
                "configurationKey": [{"key": "K", "readonly": False, "value": "1"}],
                "unknownKey": [],
            }
        else:
            payload, result = {"key": "K", "value": "2"}, {"status": "Accepted"}
        if answer == "timeout":
            message_id = f"t{len(self.log.records)}"
            self.log.call(
                station, action.title() + "Configuration", payload, by="out", message_id=message_id
            )
            self.log.add(
                CallTimedOut(
                    station=station,
                    session=session,
                    at=self.log.at,
                    message_id=message_id,
                    action=action,
                )
            )
            self.log.frame(station, "in", _text([3, message_id, result]))
        else:
            self.log.call(
                station,
                action.title() + "Configuration",
                payload,
                result,
                error=answer == "error",
                by="out",
            )

    def _reserve(self, _index: int, first: int) -> None:
        self.log.add(TransactionIdsReserved(first=first, last=first + 99, at=self.log.at))

    def _orphan(self, index: int, message_id: str) -> None:
        station = STATIONS[index]
        self._session(station)
        self.log.frame(station, "out", _text([3, message_id, {"transactionId": 1}]))


def _snapshot(views: Views) -> Any:
    return (
        [station_json(state) for state in views.stations.all()],
        [transaction_json(state) for state in views.transactions.all()],
        [anomaly_json(anomaly) for anomaly in views.transactions.anomalies],
        views.stations.all(),
        views.transactions.all(),
        views.transactions.anomalies,
    )


def _query(views: Views) -> None:
    """Every read a plugin might do; none may change what a later fold gives."""
    _snapshot(views)
    for station in STATIONS:
        views.stations.get(station)
        for connector in (1, 2):
            views.transactions.active_on(station, connector)
            views.transactions.find_start(station, connector, "A", TIMESTAMPS[0], 0)
    views.transactions.get(1)


STOP_KINDS = {
    "duplicate_stop",
    "stop_from_other_station",
    "sentinel_transaction_id",
    "stop_for_unknown_transaction",
}


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, min_size=10, max_size=80))
def test_live_fold_equals_replay(operations: list[tuple[Any, ...]]) -> None:
    generated = Generated(operations)
    records = generated.log.records
    live = Views()
    stations, transactions = StationsProjection(), TransactionsProjection()
    for count, recorded in enumerate(records, 1):
        live.apply(recorded)
        stations.apply(recorded)
        transactions.apply(recorded)
        _query(live)
        if count % 29 == 0:
            assert _snapshot(live) == _snapshot(Views.replay(records[:count]))
    replayed = Views.replay(records)
    assert _snapshot(live) == _snapshot(replayed) == _snapshot(Views.replay(records))
    assert stations.all() == replayed.stations.all()
    assert transactions.all() == replayed.transactions.all()
    assert transactions.anomalies == replayed.transactions.anomalies

    # Every answered 1.6 stop is accounted for exactly once: applied to one transaction of
    # its own station, or an anomaly that leaves every transaction alone.
    accounted: dict[int, int] = dict.fromkeys(generated.stops, 0)
    anomalies = list(replayed.transactions.anomalies)
    for transaction in replayed.transactions.all():
        anomalies += transaction.anomalies
        applied = [position for position in transaction.positions if position in generated.stops]
        assert len(applied) == (1 if transaction.status == "ended" else 0)
        for position in applied:
            accounted[position] += 1
            station, transaction_id, meter_stop = generated.stops[position]
            assert (station, transaction_id) == (transaction.station, transaction.transaction_id)
            assert transaction.meter_stop == meter_stop
            expected = meter_stop - _some(transaction.meter_start)
            assert transaction.energy_wh == (expected if expected >= 0 else None)
            below = "meter_stop_below_start" in _kinds(transaction.anomalies)
            assert below == (expected < 0)
        assert transaction.energy_wh is None or transaction.energy_wh >= 0
    for anomaly in anomalies:
        assert anomaly.kind in ANOMALY_KINDS
        if anomaly.kind in STOP_KINDS:
            accounted[anomaly.position] += 1
    assert set(accounted.values()) <= {1}
