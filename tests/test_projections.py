"""The projections (stations, transactions of both versions, device model, problems): pinned
scenarios and replay properties."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.core.events import (
    ALLOCATOR_STREAM,
    CallTimedOut,
    CommandRequested,
    ContractCertificateAnswered,
    Direction,
    Event,
    FrameLogged,
    OcspAnswered,
    Recorded,
    SessionClosed,
    SessionOpened,
    SiteDefined,
    SiteDeleted,
    TimerFired,
    TokenRegistered,
    TokenRemoved,
    TransactionIdsReserved,
    command_stream,
    contract_stream,
    ocsp_stream,
    session_stream,
    site_stream,
    timer_stream,
    token_stream,
)
from chargeledger.projections import (
    ANOMALY_KINDS,
    CertificatesProjection,
    DeviceModelProjection,
    DisplayMessagesProjection,
    MetersProjection,
    ProblemsProjection,
    SecurityEventsProjection,
    StationsProjection,
    StationState,
    TransactionsProjection,
    TransactionState,
    VariableRef,
    Views,
    anomaly_json,
    certificates_json,
    device_model_json,
    display_messages_json,
    meters_json,
    plug_and_charge_json,
    problems_json,
    reservation_json,
    security_events_json,
    station_json,
    transaction_json,
)
from chargeledger.projections.customer_information import customer_information_json
from chargeledger.projections.device_model import MAX_REPORTS_PER_STATION
from chargeledger.projections.exchanges import MAX_PENDING_PER_SESSION, Correlator
from chargeledger.projections.logs import logs_json
from chargeledger.projections.monitors import monitors_json
from chargeledger.projections.plug_and_charge import wrap
from chargeledger.projections.problems import MAX_RECENT_EVENTS
from chargeledger.projections.reservations import reservation_timer
from chargeledger.projections.transactions import energy_register_wh
from tests.test_certificates import ROOT_HASH, ROOT_PEM, make_csr

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
        elif isinstance(event, TimerFired):
            stream = timer_stream(event.name)
        elif isinstance(event, TokenRegistered | TokenRemoved):
            stream = token_stream(event.request_id)
        elif isinstance(event, CommandRequested):
            stream = command_stream(event.request_id)
        elif isinstance(event, OcspAnswered):
            stream = ocsp_stream(event.request_id)
        elif isinstance(event, ContractCertificateAnswered):
            stream = contract_stream(event.request_id)
        elif isinstance(event, SiteDefined | SiteDeleted):
            stream = site_stream(event.request_id)
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

    def event(
        self,
        station: str,
        transaction_id: str,
        event_type: str,
        seq_no: int,
        wh: float | None = None,
        *,
        result: Any = None,
        **fields: Any,
    ) -> tuple[int, int | None]:
        """A 2.0.1 TransactionEvent, answered ``result`` (``{}`` by default), with an
        energy register reading of ``wh`` when given."""
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": f"2024-05-01T10:{seq_no:02d}:00Z",
            "triggerReason": fields.pop("triggerReason", "MeterValuePeriodic"),
            "seqNo": seq_no,
            "transactionInfo": {"transactionId": transaction_id, **fields.pop("info", {})},
            **fields,
        }
        if wh is not None:
            payload["meterValue"] = [
                {"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [{"value": wh}]}
            ]
        return self.call(station, "TransactionEvent", payload, {} if result is None else result)

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
# 2.0.1 transactions
# -------------------------------------------------------------------------

TOKEN = {"idToken": "RFID-1", "type": "ISO14443"}


def _v201(log: Log, station: str = "CP2") -> None:
    log.open(station, protocol="ocpp2.0.1")


def _txn(log: Log, transaction_id: str = "T1", station: str = "CP2") -> TransactionState:
    return _some(log.views().transactions.get(transaction_id, station))


def test_transaction_event_started_updated_ended() -> None:
    log = Log()
    _v201(log)
    started = log.event(
        "CP2",
        "T1",
        "Started",
        0,
        1000,
        result={"idTokenInfo": {"status": "Accepted"}},
        triggerReason="Authorized",
        evse={"id": 1, "connectorId": 2},
        idToken=TOKEN,
        info={"chargingState": "EVConnected", "remoteStartId": 42},
    )
    transaction = _txn(log)
    assert (transaction.status, transaction.completeness) == ("active", "incomplete")
    assert (transaction.protocol, transaction.evse_id, transaction.connector_id) == (
        "ocpp2.0.1",
        1,
        2,
    )
    assert (transaction.id_tag, transaction.id_token_type, transaction.id_tag_status) == (
        "RFID-1",
        "ISO14443",
        "Accepted",
    )
    assert (transaction.remote_start_id, transaction.start_timestamp) == (
        42,
        "2024-05-01T10:00:00Z",
    )
    assert transaction.started_position == started[1] and transaction.meter_start == 1000.0
    log.event("CP2", "T1", "Updated", 1, info={"chargingState": "Charging"}, offline=True)
    log.call(
        "CP2",
        "TransactionEvent",
        {
            "eventType": "Updated",
            "timestamp": "2024-05-01T10:30:00Z",
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 2,
            "transactionInfo": {"transactionId": "T1"},
            "meterValue": [
                {
                    "timestamp": "2024-05-01T10:30:00Z",
                    "sampledValue": [
                        {"value": 2.5, "unitOfMeasure": {"unit": "kWh"}},
                        {"value": 7, "measurand": "Power.Active.Import"},
                    ],
                }
            ],
        },
        {},
    )
    assert (_txn(log).meter_last_wh, _txn(log).energy_wh) == (2500.0, 1500.0)
    ended = log.event(
        "CP2",
        "T1",
        "Ended",
        3,
        4000,
        triggerReason="EVDeparted",
        info={"stoppedReason": "EVDisconnected", "chargingState": "Idle"},
        idToken={"idToken": "OTHER", "type": "ISO14443"},
    )
    transaction = _txn(log)
    assert (transaction.status, transaction.completeness, transaction.energy_wh) == (
        "ended",
        "complete",
        3000.0,
    )
    assert (transaction.meter_stop, transaction.stop_reason, transaction.charging_state) == (
        4000.0,
        "EVDisconnected",
        "Idle",
    )
    assert transaction.id_tag == "RFID-1", "the token that stopped it is not the one that started"
    assert transaction.trigger_reasons == [
        "Authorized",
        "MeterValuePeriodic",
        "MeterValuePeriodic",
        "EVDeparted",
    ]
    assert transaction.offline and transaction.seq_nos == [0, 1, 2, 3]
    assert (transaction.started_seq_no, transaction.seq_no_gaps) == (0, [])
    assert transaction.ended_at == T0 + _some(ended[1]) and transaction.anomalies == []
    assert transaction.positions[:2] == [started[0], started[1]] and len(transaction.positions) == 8


def test_duplicate_seq_no_is_recorded_and_not_applied() -> None:
    log = Log()
    _v201(log)
    log.event("CP2", "T1", "Started", 0, 1000)
    log.event("CP2", "T1", "Updated", 1, 2000)
    before = msgspec.structs.replace(_txn(log))
    _, again = log.event("CP2", "T1", "Updated", 1, 9000, triggerReason="Trigger")
    transaction = _txn(log)
    [anomaly] = transaction.anomalies
    assert (anomaly.kind, anomaly.position, anomaly.transaction_id) == (
        "seq_no_duplicate",
        again,
        "T1",
    )
    assert msgspec.structs.replace(transaction, anomalies=[]) == before


def test_seq_no_gap_makes_the_transaction_incomplete() -> None:
    log = Log()
    _v201(log)
    log.event("CP2", "T1", "Started", 0, 1000)
    log.event("CP2", "T1", "Updated", 3)
    assert _txn(log).seq_no_gaps == [(1, 2)]
    log.event("CP2", "T1", "Updated", 2)
    log.event("CP2", "T1", "Ended", 5, 3000)
    transaction = _txn(log)
    assert _kinds(transaction.anomalies) == ["seq_no_gap", "seq_no_out_of_order", "seq_no_gap"]
    assert (transaction.status, transaction.seq_no_gaps) == ("ended", [(1, 1), (4, 4)])
    assert transaction.completeness == "incomplete" and transaction.energy_wh == 2000.0


def test_out_of_order_events_complete_the_run_before_ended() -> None:
    log = Log()
    _v201(log)
    log.event("CP2", "T1", "Updated", 1, 2000, info={"chargingState": "Charging"})
    assert _txn(log).seq_no_gaps == [(0, 0)], "the Started event is missing"
    log.event("CP2", "T1", "Updated", 3, 4000, info={"chargingState": "SuspendedEV"})
    log.event("CP2", "T1", "Updated", 2, 3000, info={"chargingState": "Charging"})
    log.event("CP2", "T1", "Started", 0, 1000, info={"chargingState": "EVConnected"})
    transaction = _txn(log)
    assert (transaction.started_seq_no, transaction.seq_no_gaps) == (0, [])
    assert transaction.charging_state == "SuspendedEV", "a late event does not overwrite"
    assert (transaction.meter_start, transaction.meter_last_wh, transaction.energy_wh) == (
        1000.0,
        4000.0,
        3000.0,
    )
    assert transaction.start_timestamp == "2024-05-01T10:00:00Z"
    log.event("CP2", "T1", "Ended", 4, 5000)
    transaction = _txn(log)
    assert transaction.completeness == "complete" and transaction.energy_wh == 4000.0
    assert _kinds(transaction.anomalies) == [
        "seq_no_gap",
        "seq_no_gap",
        "seq_no_out_of_order",
        "seq_no_out_of_order",
    ]


def test_events_after_ended_never_mutate_the_transaction() -> None:
    log = Log()
    _v201(log)
    log.event("CP2", "T1", "Started", 0, 1000)
    log.event("CP2", "T1", "Ended", 2, 2000)
    before = msgspec.structs.replace(_txn(log))
    assert before.seq_no_gaps == [(1, 1)] and before.completeness == "incomplete"
    log.event("CP2", "T1", "Updated", 1, 9000, info={"chargingState": "Charging"})
    log.event("CP2", "T1", "Updated", 7, 9500)
    log.event("CP2", "T1", "Ended", 2, 2000)
    transaction = _txn(log)
    assert _kinds(transaction.anomalies) == [
        "seq_no_gap",
        "event_after_ended",
        "event_after_ended",
        "seq_no_duplicate",
    ]
    assert msgspec.structs.replace(transaction, anomalies=before.anomalies) == before


def test_ended_first_makes_an_ended_transaction() -> None:
    log = Log()
    _v201(log)
    log.event("CP2", "T9", "Ended", 0, 500, offline=True)
    transaction = _txn(log, "T9")
    assert (transaction.status, transaction.started_seq_no, transaction.completeness) == (
        "ended",
        None,
        "incomplete",
    )
    assert (transaction.meter_start, transaction.meter_stop, transaction.energy_wh) == (
        500.0,
        500.0,
        0.0,
    )


def test_201_ids_are_per_station_and_16_ids_are_not_confused() -> None:
    log = Log()
    _v201(log, "CP2")
    _v201(log, "CP3")
    log.open("CP1")
    log.event("CP2", "T1", "Started", 0, 100)
    log.event("CP3", "T1", "Started", 0, 200)
    log.start("CP1", 7)
    transactions = log.views().transactions
    assert [(t.station, t.transaction_id) for t in transactions.all()] == [
        ("CP2", "T1"),
        ("CP3", "T1"),
        ("CP1", 7),
    ]
    assert _some(transactions.get("T1", "CP3")).meter_start == 200.0
    assert transactions.get("T1", "CP1") is None
    assert _some(transactions.get(7, "CP1")).station == "CP1"
    assert transactions.get(7, "CP2") is None
    with pytest.raises(ValueError, match="station"):
        transactions.get("T1")


def test_a_201_transaction_event_in_a_16_session_is_not_folded() -> None:
    log = Log()
    log.open("CP1")
    log.event("CP1", "T1", "Started", 0, 100)
    assert log.views().transactions.all() == []


def test_get_transaction_status_answer_is_kept_on_the_transaction() -> None:
    log = Log()
    _v201(log)
    log.event("CP2", "T1", "Started", 0)
    log.call(
        "CP2", "GetTransactionStatus", {"transactionId": "T1"}, {"messagesInQueue": True}, by="out"
    )
    assert _txn(log).messages_in_queue is True
    log.call("CP2", "GetTransactionStatus", {}, {"messagesInQueue": False}, by="out")
    log.call(
        "CP2",
        "GetTransactionStatus",
        {"transactionId": "T404"},
        {"messagesInQueue": False},
        by="out",
    )
    assert _txn(log).messages_in_queue is True


def test_16_completeness() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 1)
    assert _transaction(log, 1).completeness == "incomplete", "active"
    log.stop("CP1", 1, 2000)
    log.stop("CP1", 1, 2000)  # a stop retransmitted after a lost answer: harmless
    assert _transaction(log, 1).completeness == "complete"
    log.start("CP1", 2, meterStart=5000)
    log.stop("CP1", 2, 10)
    assert _transaction(log, 2).completeness == "incomplete", "no energy"
    log.start("CP1", 3, connectorId=2)
    log.start("CP1", 4, connectorId=2)
    log.stop("CP1", 3, 2000)
    log.stop("CP1", 4, 2000)
    views = log.views()
    assert _some(views.transactions.get(3)).completeness == "complete"
    assert _some(views.transactions.get(4)).completeness == "incomplete", "duplicate_start"


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ({"value": 1500}, 1500.0),
        ({"value": 1.5, "unitOfMeasure": {"unit": "kWh"}}, 1500.0),
        ({"value": 15, "unitOfMeasure": {"unit": "Wh", "multiplier": 2}}, 1500.0),
        ({"value": 1500, "unitOfMeasure": {"multiplier": -3}}, 1.5),
        ({"value": 7, "signedMeterValue": {"signedMeterData": "x"}}, 7.0),
        ({"value": 7, "unitOfMeasure": {"unit": "varh"}}, None),
        ({"value": 7, "unitOfMeasure": {"unit": "Wh", "multiplier": 400}}, None),
        ({"value": 7, "unitOfMeasure": {"unit": "Wh", "multiplier": "2"}}, None),
        ({"value": 7, "location": "Inlet"}, None),
    ],
)
def test_energy_register_reading_201(sample: dict[str, Any], expected: float | None) -> None:
    assert energy_register_wh([{"timestamp": "t", "sampledValue": [sample]}]) == expected


# -------------------------------------------------------------------------
# 2.0.1 stations, device model and problems
# -------------------------------------------------------------------------


def test_status_notification_per_evse_and_connector() -> None:
    log = Log()
    _v201(log)
    for evse, connector, status in ((0, 0, "Available"), (1, 1, "Occupied"), (1, 2, "Faulted")):
        log.call(
            "CP2",
            "StatusNotification",
            {
                "timestamp": "2024-05-01T10:00:00Z",
                "connectorStatus": status,
                "evseId": evse,
                "connectorId": connector,
            },
            {},
        )
    state = _station(log, "CP2")
    assert state.connectors == {}
    assert {evse: {c: s.status for c, s in cs.items()} for evse, cs in state.evses.items()} == {
        0: {0: "Available"},
        1: {1: "Occupied", 2: "Faulted"},
    }
    assert station_json(state)["evses"]["1"]["2"]["status"] == "Faulted"


def _report_data(component: dict[str, Any], variable: str, value: str, **more: Any) -> Any:
    return {
        "component": component,
        "variable": {"name": variable},
        "variableAttribute": [{"value": value, "mutability": "ReadWrite", "persistent": True}],
        **more,
    }


def _notify_report(log: Log, request_id: int, seq_no: int, tbc: bool, *data: Any) -> None:
    payload = {"requestId": request_id, "generatedAt": "g", "seqNo": seq_no, "tbc": tbc}
    if data:
        payload["reportData"] = list(data)
    log.call("CP2", "NotifyReport", payload, {})


def test_report_parts_are_assembled_into_the_device_model() -> None:
    log = Log()
    _v201(log)
    log.call(
        "CP2",
        "GetBaseReport",
        {"requestId": 5, "reportBase": "FullInventory"},
        {"status": "Accepted"},
        by="out",
    )
    interval = _report_data({"name": "OCPPCommCtrlr"}, "HeartbeatInterval", "300")
    interval["variableCharacteristics"] = {
        "unit": "s",
        "dataType": "integer",
        "minLimit": 1,
        "supportsMonitoring": False,
    }
    _notify_report(
        log, 5, 1, False, _report_data({"name": "EVSE", "evse": {"id": 1}}, "Power", "11000")
    )
    report = _some(log.views().device_model.get("CP2")).reports[5]
    assert (report.base, report.status, report.complete) == ("FullInventory", "Accepted", False)
    _notify_report(log, 5, 0, True, interval)
    _notify_report(log, 5, 0, True, _report_data({"name": "OCPPCommCtrlr"}, "Other", "x"))
    model = _some(log.views().device_model.get("CP2"))
    report = model.reports[5]
    assert (report.seq_nos, report.last_seq_no, report.complete) == ([0, 1], 1, True)
    assert sorted(model.variables) == ["EVSE@1.Power", "OCPPCommCtrlr.HeartbeatInterval"]
    assert model.value("OCPPCommCtrlr.HeartbeatInterval") == "300"
    variable = model.variables["OCPPCommCtrlr.HeartbeatInterval"]
    assert variable.attributes["Actual"].mutability == "ReadWrite"
    assert _some(variable.characteristics).unit == "s"
    assert _some(variable.characteristics).min_limit == 1.0
    document = device_model_json(model)
    assert list(document) == ["station", "variables", "reports", "unknown_variables"]
    assert document["variables"]["EVSE@1.Power"]["evse_id"] == 1
    assert document["reports"][0]["complete"] is True
    assert msgspec.json.decode(msgspec.json.encode(document)) == document


def test_get_and_set_variables_fold_into_the_device_model() -> None:
    log = Log()
    _v201(log)
    ctrlr = {"name": "OCPPCommCtrlr"}
    log.call(
        "CP2",
        "GetVariables",
        {"getVariableData": [{"component": ctrlr, "variable": {"name": "HeartbeatInterval"}}]},
        {
            "getVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "attributeValue": "300",
                    "component": ctrlr,
                    "variable": {"name": "HeartbeatInterval"},
                },
                {
                    "attributeStatus": "UnknownVariable",
                    "component": ctrlr,
                    "variable": {"name": "Nope"},
                },
            ]
        },
        by="out",
    )
    model = _some(log.views().device_model.get("CP2"))
    assert model.value("OCPPCommCtrlr.HeartbeatInterval") == "300"
    assert model.unknown_variables == ["OCPPCommCtrlr.Nope"]
    data = [
        {"component": ctrlr, "variable": {"name": name}, "attributeValue": value}
        for name, value in (("HeartbeatInterval", "60"), ("Nope", "1"), ("Locked", "2"))
    ]
    results = [
        {"attributeStatus": status, "component": ctrlr, "variable": {"name": name}}
        for name, status in (("HeartbeatInterval", "RebootRequired"), ("Nope", "Accepted"))
    ] + [{"attributeStatus": "Rejected", "component": ctrlr, "variable": {"name": "Locked"}}]
    log.call(
        "CP2", "SetVariables", {"setVariableData": data}, {"setVariableResult": results}, by="out"
    )
    model = _some(log.views().device_model.get("CP2"))
    assert model.value("OCPPCommCtrlr.HeartbeatInterval") == "60"
    assert model.value("OCPPCommCtrlr.Nope") == "1" and model.unknown_variables == []
    assert model.value("OCPPCommCtrlr.Locked") is None
    log.call("CP2", "SetVariables", {"setVariableData": data[:1]}, error=True, by="out")
    assert (
        _some(log.views().device_model.get("CP2")).value("OCPPCommCtrlr.HeartbeatInterval") == "60"
    )


def test_reports_are_bounded_per_station() -> None:
    log = Log()
    _v201(log)
    for request_id in range(MAX_REPORTS_PER_STATION + 3):
        _notify_report(log, request_id, 0, False)
    reports = _some(log.views().device_model.get("CP2")).reports
    assert list(reports) == list(range(3, MAX_REPORTS_PER_STATION + 3))


@pytest.mark.parametrize(
    "key",
    [
        "OCPPCommCtrlr.HeartbeatInterval",
        "EVSE@1.AvailabilityState",
        "Connector@1/2.AvailabilityState",
        "OCPPCommCtrlr.MessageAttempts[TransactionEvent]",
        "Controller[Main]@2.Problem[x]",
    ],
)
def test_variable_keys_round_trip(key: str) -> None:
    ref = _some(VariableRef.parse(key))
    assert ref.key == key
    wire = ref.to_wire()
    assert VariableRef.from_wire(wire["component"], wire["variable"]) == ref


@pytest.mark.parametrize("key", ["HeartbeatInterval", "A.B.C", "@1.X", "A@x.B", ""])
def test_variable_keys_that_do_not_parse(key: str) -> None:
    assert VariableRef.parse(key) is None


def _event(
    component: str, variable: str, value: str, trigger: str = "Alerting", **more: Any
) -> dict[str, Any]:
    return {
        "eventId": 1,
        "timestamp": "2024-05-01T10:00:00Z",
        "trigger": trigger,
        "actualValue": value,
        "component": {"name": component, "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": variable},
        "eventNotificationType": "HardWiredNotification",
        **more,
    }


def _notify_event(log: Log, *events: dict[str, Any]) -> None:
    payload = {"generatedAt": "g", "seqNo": 0, "eventData": list(events)}
    log.call("CP2", "NotifyEvent", payload, {})


def test_notify_event_raises_and_clears_problems() -> None:
    log = Log()
    _v201(log)
    _notify_event(
        log,
        _event("ConnectorPlugRetentionLock", "Problem", "true", "Delta", techCode="E42"),
        _event("Temperature", "Level", "80", "Alerting"),
        _event("Power", "Level", "7", "Periodic"),
    )
    problems = _some(log.views().problems.get("CP2"))
    assert sorted(problems.active) == [
        "ConnectorPlugRetentionLock@1/1.Problem",
        "Temperature@1/1.Level",
    ]
    assert problems.active["ConnectorPlugRetentionLock@1/1.Problem"].tech_code == "E42"
    assert len(problems.recent) == 3
    _notify_event(
        log,
        _event("ConnectorPlugRetentionLock", "Problem", "false", "Delta"),
        _event("Temperature", "Level", "40", "Alerting", cleared=True),
    )
    problems = _some(log.views().problems.get("CP2"))
    assert problems.active == {} and len(problems.recent) == 5
    document = problems_json(problems)
    assert list(document) == ["station", "active", "recent"]
    assert document["recent"][0]["key"] == "ConnectorPlugRetentionLock@1/1.Problem"
    assert msgspec.json.decode(msgspec.json.encode(document)) == document


def test_status_faults_are_problems_in_both_versions() -> None:
    log = Log()
    log.open("CP1")
    _v201(log)
    for connector, code in (
        (1, "GroundFailure"),
        (0, "OtherError"),
        (1, "NoError"),
        (2, "NoError"),
    ):
        log.call(
            "CP1",
            "StatusNotification",
            {"connectorId": connector, "status": "Faulted", "errorCode": code, "info": "i"},
            {},
        )
    for evse, status in ((1, "Faulted"), (2, "Available")):
        log.call(
            "CP2",
            "StatusNotification",
            {"timestamp": "t", "connectorStatus": status, "evseId": evse, "connectorId": 1},
            {},
        )
    views = log.views()
    cp1 = _some(views.problems.get("CP1"))
    assert list(cp1.active) == ["ChargingStation.Problem"]
    assert cp1.active["ChargingStation.Problem"].actual_value == "OtherError"
    assert [(p.ref.key, p.cleared) for p in cp1.recent] == [
        ("Connector@1/1.Problem", False),
        ("ChargingStation.Problem", False),
        ("Connector@1/1.Problem", True),
    ]
    assert list(_some(views.problems.get("CP2")).active) == ["Connector@1/1.Problem"]


def test_recent_events_are_bounded() -> None:
    log = Log()
    _v201(log)
    for _ in range(MAX_RECENT_EVENTS + 5):
        _notify_event(log, _event("Power", "Level", "7", "Periodic"))
    assert len(_some(log.views().problems.get("CP2")).recent) == MAX_RECENT_EVENTS


def test_views_know_the_last_exchange_and_position() -> None:
    log = Log()
    _v201(log)
    log.call("CP2", "Heartbeat", {}, {"currentTime": "t"})
    views = Views()
    for recorded in log.records[:-1]:
        views.apply(recorded)
    assert views.last_exchange is None and views.position == 2
    views.apply(log.records[-1])
    exchange = _some(views.last_exchange)
    assert (exchange.action, exchange.origin, views.position) == ("Heartbeat", "in", 3)


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
        "evses",
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
    assert document["evses"] == {"1": {"1": document["connectors"]["1"]}}
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
        "id_token_type",
        "id_tag_status",
        "status",
        "completeness",
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
        "remote_start_id",
        "charging_state",
        "trigger_reasons",
        "offline",
        "seq_nos",
        "started_seq_no",
        "seq_no_gaps",
        "messages_in_queue",
    ]
    assert (document["transaction_id"], document["station"], document["status"]) == (
        7,
        "CP1",
        "ended",
    )
    assert document["completeness"] == "incomplete", "no energy: not billable as it stands"
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

CSRS = (make_csr("CP1"), make_csr("CP-ELSEWHERE"))
"""A CSR for the first station's identity, and one for an identity no station has."""

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
    "open": st.tuples(st.sampled_from(["ocpp1.6", "ocpp2.0.1"])),
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
    "event201": st.tuples(
        st.integers(0, 2),
        st.sampled_from(["Started", "Updated", "Updated", "Ended"]),
        st.integers(-4, 5),
        st.one_of(st.none(), st.integers(0, 5000)),
        answer,
    ),
    "status201": st.tuples(
        st.integers(0, 2), st.integers(0, 2), st.sampled_from(["Available", "Faulted"])
    ),
    "report": st.tuples(
        st.integers(1, 3), st.integers(0, 2), st.booleans(), st.sampled_from(["A", "B"])
    ),
    "notify_event": st.tuples(st.sampled_from(["Problem", "Level"]), st.booleans()),
    "variables": st.tuples(
        st.sampled_from(["GetVariables", "SetVariables"]),
        st.sampled_from(["Accepted", "UnknownVariable", "Rejected"]),
        answer,
    ),
    "transaction_status": st.tuples(st.integers(0, 2), st.booleans()),
    "certificate": st.tuples(
        st.sampled_from(["install", "ids", "ids_all", "delete", "sign", "signed"]),
        st.sampled_from(["Accepted", "NotFound", "Rejected"]),
        answer,
    ),
    "security_event": st.tuples(
        st.sampled_from(["TamperDetectionActivated", "InvalidMessages"]), answer
    ),
    "reservation": st.tuples(
        st.sampled_from(["make", "make", "cancel", "update", "timer"]),
        st.integers(1, 3),
        st.sampled_from(["Accepted", "Accepted", "Occupied", "Expired", "Removed"]),
        answer,
    ),
    "display": st.tuples(
        st.sampled_from(["set", "set", "clear", "get", "part", "last_part"]),
        st.integers(1, 3),
        st.sampled_from(["Accepted", "Accepted", "Unknown", "Rejected"]),
        answer,
        st.integers(1, 2),
    ),
    "standalone_meter": st.tuples(
        st.integers(0, 2),
        st.sampled_from(["Voltage", "Energy.Active.Import.Register"]),
        st.sampled_from(TIMESTAMPS),
        st.integers(0, 500),
    ),
    "pnc": st.tuples(
        st.sampled_from(["ocsp", "provider", "status", "authorize", "contract", "install"]),
        st.sampled_from(["good", "revoked", "failed", "Accepted", "Rejected"]),
        answer,
    ),
    "token": st.tuples(
        st.sampled_from(["register", "register", "remove"]),
        st.sampled_from(["A", "a", "B"]),
        st.sampled_from(["ISO14443", "Central"]),
        st.sampled_from(["Accepted", "Blocked"]),
        st.sampled_from([None, "G1", "G2"]),
    ),
}
"""Each operation's arguments after the station index."""

WEIGHTED = ["start"] * 4 + ["stop"] * 3 + ["meter"] * 2 + ["event201"] * 6 + sorted(OPERATIONS)
operation = st.sampled_from(WEIGHTED).flatmap(
    lambda kind: st.tuples(st.just(kind), station_index, OPERATIONS[kind]).map(
        lambda drawn: (drawn[0], drawn[1], *drawn[2])
    )
)


V201_ACTIONS = frozenset(
    {"TransactionEvent", "NotifyReport", "NotifyEvent", "NotifyDisplayMessages"}
)
"""Actions whose operations open a 2.0.1 session when the station has none."""


class Generated:
    """A log built from generated operations, and what the invariants need to know of it."""

    def __init__(self, operations: list[tuple[Any, ...]]) -> None:
        self.log = Log()
        self.protocols: dict[str, str] = {}
        self.open_sessions: dict[str, list[str]] = {station: [] for station in STATIONS}
        self.starts: list[tuple[str, dict[str, Any], int]] = []
        self.issued: list[tuple[str, int]] = []
        self.next_id = 1
        self.next_seq_no: dict[tuple[str, int], int] = {}
        """The next 2.0.1 seqNo of each (station, transaction)."""
        self.stops: dict[int, tuple[str, int, int]] = {}
        """Result position of each answered 1.6 stop: (station, id, meterStop)."""
        self.security_events = dict.fromkeys(STATIONS, 0)
        """SecurityEventNotifications answered with a CALLRESULT, per station."""
        self.tokens: dict[tuple[str, str], tuple[str, str, str | None]] = {}
        """The registry the token operations leave: (folded token, type) -> (spelling,
        status, group) of the newest registration not removed since."""
        for operation in operations:
            getattr(self, f"_{operation[0]}")(*operation[1:])

    def _session(self, station: str, protocol: str = "ocpp1.6") -> str:
        """The station's current session, opened with ``protocol`` when it has none."""
        if not self.open_sessions[station]:
            self._open(STATIONS.index(station), protocol)
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
        self._session(station, "ocpp2.0.1" if action in V201_ACTIONS else "ocpp1.6")
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

    def _event201(
        self, index: int, which: int, event_type: str, seq_no: int, wh: int | None, answer: str
    ) -> None:
        """A TransactionEvent; a negative ``seq_no`` stands for the transaction's next one
        (Started for 0), so that complete runs are generated as well as broken ones."""
        key = (STATIONS[index], which)
        if seq_no < 0:
            seq_no = self.next_seq_no.get(key, 0)
            event_type = "Started" if seq_no == 0 else event_type
        self.next_seq_no[key] = seq_no + 1
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": "t",
            "triggerReason": "Trigger",
            "seqNo": seq_no,
            "transactionInfo": {"transactionId": f"T{which}", "chargingState": "Charging"},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "A", "type": "ISO14443"},
        }
        if wh is not None:
            payload["meterValue"] = [{"timestamp": "t", "sampledValue": [{"value": wh}]}]
        result = {"idTokenInfo": {"status": "Accepted"}}
        self._call(STATIONS[index], "TransactionEvent", payload, result, answer)

    def _status201(self, index: int, evse: int, connector: int, status: str) -> None:
        payload = {
            "timestamp": "t",
            "connectorStatus": status,
            "evseId": evse,
            "connectorId": connector,
        }
        self._call(STATIONS[index], "StatusNotification", payload, {}, "result")

    def _report(self, index: int, request_id: int, seq_no: int, tbc: bool, name: str) -> None:
        data = {
            "component": {"name": "C"},
            "variable": {"name": name},
            "variableAttribute": [{"value": str(seq_no)}],
        }
        payload = {
            "requestId": request_id,
            "generatedAt": "g",
            "seqNo": seq_no,
            "tbc": tbc,
            "reportData": [data],
        }
        self._call(STATIONS[index], "NotifyReport", payload, {}, "result")

    def _notify_event(self, index: int, variable: str, cleared: bool) -> None:
        data = {
            "eventId": 1,
            "timestamp": "t",
            "trigger": "Alerting",
            "actualValue": "true",
            "cleared": cleared,
            "component": {"name": "C"},
            "variable": {"name": variable},
            "eventNotificationType": "HardWiredNotification",
        }
        payload = {"generatedAt": "g", "seqNo": 0, "eventData": [data]}
        self._call(STATIONS[index], "NotifyEvent", payload, {}, "result")

    def _variables(self, index: int, action: str, status: str, answer: str) -> None:
        station = STATIONS[index]
        self._session(station, "ocpp2.0.1")
        names = {"component": {"name": "C"}, "variable": {"name": "A"}}
        if action == "GetVariables":
            payload: dict[str, Any] = {"getVariableData": [names]}
            result = {
                "getVariableResult": [{**names, "attributeStatus": status, "attributeValue": "g"}]
            }
        else:
            payload = {"setVariableData": [{**names, "attributeValue": "s"}]}
            result = {"setVariableResult": [{**names, "attributeStatus": status}]}
        error = answer == "error"
        self.log.call(
            station, action, payload, None if answer == "none" else result, error=error, by="out"
        )

    def _transaction_status(self, index: int, which: int, queued: bool) -> None:
        station = STATIONS[index]
        self._session(station, "ocpp2.0.1")
        payload = {"transactionId": f"T{which}"}
        self.log.call(
            station, "GetTransactionStatus", payload, {"messagesInQueue": queued}, by="out"
        )

    def _certificate(self, index: int, what: str, status: str, answer: str) -> None:
        """A certificate exchange: the station's SignCertificate (for itself or another
        identity), or one of our certificate CALLs, answered ``status``."""
        station = STATIONS[index]
        if what == "sign":
            self._call(
                station, "SignCertificate", {"csr": CSRS[index % 2]}, {"status": status}, answer
            )
            return
        self._session(station)
        root = "CentralSystemRootCertificate"
        result: dict[str, Any] = {"status": status}
        if what == "install":
            action, payload = (
                "InstallCertificate",
                {"certificateType": root, "certificate": ROOT_PEM},
            )
        elif what == "ids":
            action, payload = "GetInstalledCertificateIds", {"certificateType": root}
            result["certificateHashData"] = [ROOT_HASH]
        elif what == "ids_all":
            action, payload = "GetInstalledCertificateIds", {}
            chain = {"certificateType": "CSMSRootCertificate", "certificateHashData": ROOT_HASH}
            result["certificateHashDataChain"] = [chain]
        elif what == "delete":
            action, payload = "DeleteCertificate", {"certificateHashData": ROOT_HASH}
        else:
            action, payload = "CertificateSigned", {"certificateChain": ROOT_PEM}
        self.log.call(
            station,
            action,
            payload,
            None if answer == "none" else result,
            error=answer == "error",
            by="out",
        )

    def _security_event(self, index: int, event_type: str, answer: str) -> None:
        payload = {"type": event_type, "timestamp": "t", "techInfo": "i"}
        if self._call(STATIONS[index], "SecurityEventNotification", payload, {}, answer):
            self.security_events[STATIONS[index]] += 1

    def _reservation(
        self, index: int, what: str, reservation_id: int, status: str, answer: str
    ) -> None:
        """A reservation's exchange: our ReserveNow (of connector/EVSE 1, in the session's
        version) or CancelReservation answered ``status``, the station's 2.0.1
        ReservationStatusUpdate (``status`` Expired or Removed), or its expiry timer firing."""
        station = STATIONS[index]
        session = self._session(station)
        if what == "timer":
            name = reservation_timer(station, reservation_id)
            self.log.add(TimerFired(name=name, due=self.log.at - 0.5, at=self.log.at))
            return
        if what == "update":
            payload = {"reservationId": reservation_id, "reservationUpdateStatus": status}
            self._call(station, "ReservationStatusUpdate", payload, {}, answer)
            return
        if what == "cancel":
            action, payload = "CancelReservation", {"reservationId": reservation_id}
        elif self.protocols[session] == "ocpp1.6":
            action = "ReserveNow"
            payload = {
                "connectorId": 1,
                "expiryDate": TIMESTAMPS[0],
                "idTag": "B",
                "reservationId": reservation_id,
            }
        else:
            action = "ReserveNow"
            payload = {
                "id": reservation_id,
                "expiryDateTime": TIMESTAMPS[0],
                "idToken": {"idToken": "B", "type": "Central"},
                "evseId": 1,
            }
        self.log.call(
            station,
            action,
            payload,
            None if answer == "none" else {"status": status},
            error=answer == "error",
            by="out",
        )

    def _pnc(self, index: int, what: str, status: str, answer: str) -> None:
        """Plug & Charge: an OCSP check recorded, or a station's GetCertificateStatus,
        certificate Authorize, Get15118EVCertificate, or our InstallCertificate, in 2.0.1 or
        wrapped in a 1.6 DataTransfer (answered ``Accepted`` or refused with ``status``)."""
        station = STATIONS[index]
        hash_data = {**ROOT_HASH, "responderURL": "http://ocsp"}
        if what == "ocsp":
            certificate = {
                "hash_algorithm": "SHA256",
                "issuer_name_hash": ROOT_HASH["issuerNameHash"],
                "issuer_key_hash": ROOT_HASH["issuerKeyHash"],
                "serial_number": ROOT_HASH["serialNumber"],
            }
            verdict = status if status in ("good", "revoked") else "failed"
            self.log.add(
                OcspAnswered(
                    request_id=f"o{len(self.log.records)}",
                    station=station,
                    at=self.log.at,
                    url="http://ocsp",
                    status=verdict,
                    response="AA==",
                    **certificate,
                )
            )
            return
        if what == "provider":  # a remote contract provider's answer, recorded by the core
            accepted = status == "Accepted"
            self.log.add(
                ContractCertificateAnswered(
                    request_id=f"c{len(self.log.records)}",
                    station=station,
                    message_id=f"m{len(self.log.records)}",
                    call_at=self.log.at,
                    at=self.log.at,
                    url="http://provider",
                    http_status=200 if answer != "none" else None,
                    status="Accepted" if accepted else "Failed",
                    exi_response="gA==" if accepted else "",
                    reason=None if accepted else "ProviderUnavailable",
                )
            )
            return
        self._session(station)
        action, payload, result, by = {
            "status": (
                "GetCertificateStatus",
                {"ocspRequestData": hash_data},
                {"status": "Accepted", "ocspResult": "AA=="},
                "in",
            ),
            "authorize": (
                "Authorize",
                {"idToken": {"idToken": "E", "type": "eMAID"}, "certificate": ROOT_PEM},
                {"idTokenInfo": {"status": "Invalid"}, "certificateStatus": "CertChainError"},
                "in",
            ),
            "contract": (
                "Get15118EVCertificate",
                {"iso15118SchemaVersion": "s", "action": "Install", "exiRequest": "AA=="},
                {"status": "Failed", "exiResponse": "", "statusInfo": {"reasonCode": "X"}},
                "in",
            ),
            "install": (
                "InstallCertificate",
                {"certificateType": "V2GRootCertificate", "certificate": ROOT_PEM},
                {"status": "Accepted"},
                "out",
            ),
        }[what]
        if self._v16(station):
            refused = status == "Rejected"
            payload = wrap(action, payload)
            result = (
                {"status": "Rejected"}
                if refused
                else {
                    "status": "Accepted",
                    "data": json.dumps(result),
                }
            )
            action = "DataTransfer"
        self.log.call(
            station,
            action,
            payload,
            None if answer == "none" else result,
            error=answer == "error",
            by="in" if by == "in" else "out",
        )

    def _token(
        self, _index: int, change: str, id_token: str, type: str, status: str, group: str | None
    ) -> None:
        request_id = f"r{len(self.log.records)}"
        if change == "remove":
            self.tokens.pop((id_token.casefold(), type), None)
            self.log.add(
                TokenRemoved(
                    request_id=request_id, at=self.log.at, key="k", id_token=id_token, type=type
                )
            )
            return
        self.log.add(
            TokenRegistered(
                request_id=request_id,
                at=self.log.at,
                key="k",
                id_token=id_token,
                type=type,
                status=status,
                group=group,
            )
        )
        self.tokens[id_token.casefold(), type] = (id_token, status, group)

    def _display(
        self, index: int, what: str, message_id: int, status: str, answer: str, request_id: int
    ) -> None:
        """A display-message exchange: our Set/Clear/GetDisplayMessages answered ``status``,
        or a NotifyDisplayMessages part (the last one of its report, or not) of report
        ``request_id`` listing message ``message_id``."""
        station = STATIONS[index]
        self._session(station, "ocpp2.0.1")
        if self._v16(station):  # display messages are 2.0.1: it reconnects speaking 2.0.1
            self._open(index, "ocpp2.0.1")
        message = {
            "id": message_id,
            "priority": "NormalCycle" if message_id < 3 else "InFront",
            "message": {"format": "UTF8", "content": f"m{message_id}"},
            "transactionId": f"T{message_id - 1}",
        }
        if what in ("part", "last_part"):
            part = {"requestId": request_id, "tbc": what == "part", "messageInfo": [message]}
            self._call(station, "NotifyDisplayMessages", part, {}, answer)
            return
        if what == "set":
            action, payload = "SetDisplayMessage", {"message": message}
        elif what == "clear":
            action, payload = "ClearDisplayMessage", {"id": message_id}
        else:
            action, payload = "GetDisplayMessages", {"requestId": request_id}
            if message_id == 1:
                payload["priority"] = "NormalCycle"
        result = None if answer == "none" else {"status": status}
        self.log.call(station, action, payload, result, error=answer == "error", by="out")

    def _standalone_meter(
        self, index: int, connector: int, measurand: str, timestamp: str, value: int
    ) -> None:
        """A MeterValues outside a transaction, in the version of the station's session."""
        station = STATIONS[index]
        self._session(station)
        sample = {"value": str(value), "measurand": measurand, "context": "Sample.Clock"}
        values = [{"timestamp": timestamp, "sampledValue": [sample]}]
        if self._v16(station):
            payload: dict[str, Any] = {"connectorId": connector, "meterValue": values}
        else:
            payload = {"evseId": connector, "meterValue": values}
        self._call(station, "MeterValues", payload, {}, "result")

    def _orphan(self, index: int, message_id: str) -> None:
        station = STATIONS[index]
        self._session(station)
        self.log.frame(station, "out", _text([3, message_id, {"transactionId": 1}]))


def _snapshot(views: Views) -> Any:
    return (
        [station_json(state) for state in views.stations.all()],
        [transaction_json(state) for state in views.transactions.all()],
        [anomaly_json(anomaly) for anomaly in views.transactions.anomalies],
        [device_model_json(state) for state in views.device_model.all()],
        [problems_json(state) for state in views.problems.all()],
        [certificates_json(state) for state in views.certificates.all()],
        [security_events_json(state) for state in views.security_events.all()],
        [plug_and_charge_json(state) for state in views.plug_and_charge.all()],
        [reservation_json(state) for state in views.reservations.all()],
        views.reservations.anomalies,
        views.timers.pending(),
        views.stations.all(),
        views.transactions.all(),
        views.transactions.anomalies,
        views.device_model.all(),
        views.problems.all(),
        views.certificates.all(),
        views.security_events.all(),
        views.tokens.all(),
        views.tokens.groups(),
        views.tokens.position,
        [display_messages_json(state) for state in views.display_messages.all()],
        [meters_json(state) for state in views.meters.all()],
        views.display_messages.all(),
        views.meters.all(),
        [logs_json(state) for state in views.logs.all()],
        [monitors_json(state) for state in views.monitors.all()],
        [customer_information_json(state) for state in views.customer_information.all()],
    )


def _query(views: Views) -> None:
    """Every read a plugin might do; none may change what a later fold gives."""
    _snapshot(views)
    for station in STATIONS:
        views.stations.get(station)
        for connector in (1, 2):
            views.transactions.active_on(station, connector)
            views.transactions.find_start(station, connector, "A", TIMESTAMPS[0], 0)
        views.transactions.get("T0", station)
        views.device_model.get(station)
        views.problems.get(station)
        views.certificates.get(station)
        views.security_events.get(station)
        views.reservations.get(station, 1)
        views.reservations.all(station)
        views.display_messages.get(station)
        views.meters.get(station)
    views.reservations.open()
    views.reservations.made_at(views.position)
    views.transactions.get(1)
    for id_token in ("A", "a", "B"):
        views.tokens.get(id_token)
        views.tokens.get(id_token, "Central")


STOP_KINDS = {
    "duplicate_stop",
    "stop_from_other_station",
    "sentinel_transaction_id",
    "stop_for_unknown_transaction",
}


def _missing(first: int, seq_nos: list[int]) -> list[tuple[int, int]]:
    """The gaps of a seqNo run, computed the slow, obvious way."""
    absent = sorted(set(range(first, max(seq_nos, default=first) + 1)) - set(seq_nos))
    ranges: list[tuple[int, int]] = []
    for seq_no in absent:
        if ranges and ranges[-1][1] == seq_no - 1:
            ranges[-1] = (ranges[-1][0], seq_no)
        else:
            ranges.append((seq_no, seq_no))
    return ranges


def _check_201(transaction: TransactionState) -> None:
    assert transaction.seq_nos == sorted(set(transaction.seq_nos))
    assert transaction.seq_no_gaps == _missing(transaction.started_seq_no or 0, transaction.seq_nos)
    complete = transaction.status == "ended" and transaction.started_seq_no is not None
    complete = complete and not transaction.seq_no_gaps
    # And what its charge detail record needs (the one billing rule: projections/billing.py).
    needed = (transaction.start_timestamp, transaction.stop_timestamp, transaction.meter_start)
    complete = complete and None not in (*needed, transaction.meter_stop, transaction.energy_wh)
    assert transaction.completeness == ("complete" if complete else "incomplete")
    assert len(transaction.positions) == 2 * len(transaction.seq_nos)
    if transaction.status == "ended":
        # Nothing was applied after the Ended event.
        assert transaction.ended_at == T0 + transaction.positions[-1]
    if transaction.meter_start is not None and transaction.meter_last_wh is not None:
        expected = transaction.meter_last_wh - transaction.meter_start
        assert transaction.energy_wh == (expected if expected >= 0 else None)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, min_size=10, max_size=80))
def test_live_fold_equals_replay(operations: list[tuple[Any, ...]]) -> None:
    generated = Generated(operations)
    records = generated.log.records
    live = Views()
    stations, transactions = StationsProjection(), TransactionsProjection()
    device_model, problems = DeviceModelProjection(), ProblemsProjection()
    certificates, security_events = CertificatesProjection(), SecurityEventsProjection()
    display_messages, meters = DisplayMessagesProjection(), MetersProjection()
    for count, recorded in enumerate(records, 1):
        live.apply(recorded)
        display_messages.apply(recorded)
        meters.apply(recorded)
        certificates.apply(recorded)
        security_events.apply(recorded)
        stations.apply(recorded)
        transactions.apply(recorded)
        device_model.apply(recorded)
        problems.apply(recorded)
        _query(live)
        if count % 29 == 0:
            assert _snapshot(live) == _snapshot(Views.replay(records[:count]))
    replayed = Views.replay(records)
    assert _snapshot(live) == _snapshot(replayed) == _snapshot(Views.replay(records))
    assert stations.all() == replayed.stations.all()
    assert transactions.all() == replayed.transactions.all()
    assert transactions.anomalies == replayed.transactions.anomalies
    assert device_model.all() == replayed.device_model.all()
    assert problems.all() == replayed.problems.all()
    assert certificates.all() == replayed.certificates.all()
    assert security_events.all() == replayed.security_events.all()
    assert display_messages.all() == replayed.display_messages.all()
    assert meters.all() == replayed.meters.all()
    # Every CSR answered is kept with its problem exactly when it names another identity;
    # every acknowledged security event is counted once.
    for held in replayed.certificates.all():
        for csr in held.csrs:
            assert (csr.problem is None) == (csr.common_name == held.station)
    registry = {
        (state.id_token.casefold(), state.type): (state.id_token, state.status, state.group)
        for state in replayed.tokens.all()
    }
    assert registry == generated.tokens
    for id_token in ("a", "b"):
        newest = [state for state in replayed.tokens.all() if state.id_token.casefold() == id_token]
        best = max(newest, key=lambda state: state.position, default=None)
        assert replayed.tokens.get(id_token.upper()) == best
    for station, sent in generated.security_events.items():
        reported = replayed.security_events.get(station)
        assert sent == (0 if reported is None else sum(reported.counts.values()))

    # Every answered 1.6 stop is accounted for exactly once: applied to one transaction of
    # its own station, or an anomaly that leaves every transaction alone.
    accounted: dict[int, int] = dict.fromkeys(generated.stops, 0)
    anomalies = list(replayed.transactions.anomalies)
    for transaction in replayed.transactions.all():
        anomalies += transaction.anomalies
        if transaction.protocol == "ocpp2.0.1":
            _check_201(transaction)
            continue
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
