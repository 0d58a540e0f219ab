"""The projections plugins and the API read: ``Views`` folded from the log, and JSON forms."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.certificates import (
    CertificatesProjection,
    StationCertificates,
    certificates_json,
)
from chargeledger.projections.charging_profiles import ChargingProfilesProjection
from chargeledger.projections.customer_information import CustomerInformationProjection
from chargeledger.projections.device_model import (
    DeviceModelProjection,
    DeviceModelState,
    VariableRef,
    device_model_json,
)
from chargeledger.projections.display_messages import (
    DisplayMessagesProjection,
    StationDisplay,
    display_messages_json,
)
from chargeledger.projections.exchanges import (
    Correlator,
    Exchange,
    Kind,
    result_only,
    routed_to,
)
from chargeledger.projections.firmware import FirmwareProjection
from chargeledger.projections.local_lists import LocalListsProjection
from chargeledger.projections.logs import LogsProjection
from chargeledger.projections.metering import MeteringProjection
from chargeledger.projections.meters import MetersProjection, StationMeters, meters_json
from chargeledger.projections.monitors import MonitorsProjection
from chargeledger.projections.plug_and_charge import (
    PlugAndChargeProjection,
    StationPlugAndCharge,
    plug_and_charge_json,
)
from chargeledger.projections.problems import ProblemsProjection, StationProblems, problems_json
from chargeledger.projections.registry import (
    Credentials,
    Registration,
    RegistryProjection,
    sets_password,
)
from chargeledger.projections.reservations import (
    RESERVATION_ANOMALY_KINDS,
    ReservationAnomaly,
    ReservationsProjection,
    ReservationState,
    reservation_json,
)
from chargeledger.projections.security_events import (
    SecurityEvent,
    SecurityEventsProjection,
    StationSecurityEvents,
    security_events_json,
)
from chargeledger.projections.sites import SitesProjection
from chargeledger.projections.stations import (
    BootInfo,
    ConfigurationKey,
    ConnectorState,
    StationsProjection,
    StationState,
)
from chargeledger.projections.tariffs import TariffsProjection, TariffState
from chargeledger.projections.timers import TimersProjection
from chargeledger.projections.tokens import Tokens, TokenState
from chargeledger.projections.transactions import (
    ANOMALY_KINDS,
    Anomaly,
    TransactionsProjection,
    TransactionState,
)

__all__ = [
    "ANOMALY_KINDS",
    "RESERVATION_ANOMALY_KINDS",
    "Anomaly",
    "BootInfo",
    "CertificatesProjection",
    "ChargingProfilesProjection",
    "ConfigurationKey",
    "ConnectorState",
    "Credentials",
    "DeviceModelProjection",
    "DeviceModelState",
    "DisplayMessagesProjection",
    "Exchange",
    "FirmwareProjection",
    "LocalListsProjection",
    "MeteringProjection",
    "MetersProjection",
    "PlugAndChargeProjection",
    "ProblemsProjection",
    "Registration",
    "RegistryProjection",
    "ReservationAnomaly",
    "ReservationState",
    "ReservationsProjection",
    "SecurityEvent",
    "SecurityEventsProjection",
    "SitesProjection",
    "StationCertificates",
    "StationDisplay",
    "StationMeters",
    "StationPlugAndCharge",
    "StationProblems",
    "StationSecurityEvents",
    "StationState",
    "StationsProjection",
    "TariffState",
    "TariffsProjection",
    "TimersProjection",
    "TokenState",
    "Tokens",
    "TransactionState",
    "TransactionsProjection",
    "VariableRef",
    "Views",
    "anomaly_json",
    "certificates_json",
    "device_model_json",
    "display_messages_json",
    "meters_json",
    "plug_and_charge_json",
    "problems_json",
    "reservation_json",
    "security_events_json",
    "sets_password",
    "station_json",
    "transaction_json",
]


_Fold = Callable[[Recorded, Exchange | None, Exchange | None], None]
"""A projection's fold as ``Views`` calls it: the event, the exchange it completed, and that
exchange when a CALLRESULT closed it (else ``None``)."""


class Views:
    """Every projection, folded together from one pass over the log.

    Each event is folded only into the projections it concerns: those whose ``CONCERNS``
    name its kind (:func:`~chargeledger.projections.exchanges.routed_to`), through a table
    of the folds per kind built on first sight of each kind, in a fixed order.

    Feed each committed event once, in position order: folding is not idempotent (an event
    folded twice is an exchange seen twice, which shows as an anomaly, never as state
    applied twice) and an event skipped or folded out of order makes a live fold differ from
    a replay.
    """

    def __init__(self, *, routed: bool = True) -> None:
        """``routed=False`` folds every event into every projection (what the test of the
        projections' ``CONCERNS`` compares the routed fold with)."""
        self.stations = StationsProjection()
        self.transactions = TransactionsProjection()
        self.registry = RegistryProjection()
        self.device_model = DeviceModelProjection()
        self.problems = ProblemsProjection()
        self.certificates = CertificatesProjection()
        self.security_events = SecurityEventsProjection()
        self.timers = TimersProjection()
        self.reservations = ReservationsProjection()
        self.tokens = Tokens()
        self.local_lists = LocalListsProjection()
        self.display_messages = DisplayMessagesProjection()
        self.meters = MetersProjection()
        self.logs = LogsProjection()
        self.monitors = MonitorsProjection()
        self.customer_information = CustomerInformationProjection()
        self.sites = SitesProjection()
        self.tariffs = TariffsProjection(self.sites)
        self.metering = MeteringProjection()
        self.charging_profiles = ChargingProfilesProjection()
        self.plug_and_charge = PlugAndChargeProjection()
        self.firmware = FirmwareProjection()
        self.position = 0
        """Position of the event folded last (0 before the first)."""
        self.last_exchange: Exchange | None = None
        """The CALL and answer (CALLRESULT or CALLERROR) the event folded last completed, if
        it completed one: what the plugin host hands each react hook as its ``exchange``."""
        self.last_kind: Kind | None = None
        """The kind of the event folded last (:func:`~.exchanges.kind_of`): its OCPP action
        for a frame with one, else its type. The plugin host routes it to the react hooks
        declared for it."""
        self._correlator = Correlator()
        self._routed = routed
        # Each fold with what it reads, in the order they run: a later fold may read an
        # earlier one (metering reads transactions, tokens and tariffs).
        self._folds: list[tuple[frozenset[Kind], _Fold]] = [
            (self.stations.CONCERNS, lambda r, e, a: self.stations.fold(r, a)),
            (self.transactions.CONCERNS, lambda r, e, a: self.transactions.fold(r, a)),
            (self.registry.CONCERNS, lambda r, e, a: self.registry.apply(r, e)),
            (self.device_model.CONCERNS, lambda r, e, a: self.device_model.fold(r, a)),
            (self.problems.CONCERNS, lambda r, e, a: self.problems.fold(r, a)),
            (self.certificates.CONCERNS, lambda r, e, a: self.certificates.fold(r, a)),
            (self.security_events.CONCERNS, lambda r, e, a: self.security_events.fold(r, a)),
            (self.timers.CONCERNS, lambda r, e, a: self.timers.apply(r)),
            (self.reservations.CONCERNS, lambda r, e, a: self.reservations.fold(r, e)),
            (self.tokens.CONCERNS, lambda r, e, a: self.tokens.apply(r)),
            (self.local_lists.CONCERNS, lambda r, e, a: self.local_lists.fold(r, e)),
            (self.display_messages.CONCERNS, lambda r, e, a: self.display_messages.fold(r, a)),
            (self.meters.CONCERNS, lambda r, e, a: self.meters.fold(r, a)),
            (self.logs.CONCERNS, lambda r, e, a: self.logs.fold(r, a)),
            (self.monitors.CONCERNS, lambda r, e, a: self.monitors.fold(r, a)),
            (
                self.customer_information.CONCERNS,
                lambda r, e, a: self.customer_information.fold(r, a),
            ),
            (self.tariffs.CONCERNS, lambda r, e, a: self.tariffs.apply(r)),
            (
                self.metering.CONCERNS,
                lambda r, e, a: self.metering.fold(a, self.transactions, self.tokens, self.tariffs),
            ),
            (self.charging_profiles.CONCERNS, lambda r, e, a: self.charging_profiles.fold(r, a)),
            # a CALLERROR answers an allocation too
            (self.sites.CONCERNS, lambda r, e, a: self.sites.fold(r, e)),
            (self.plug_and_charge.CONCERNS, lambda r, e, a: self.plug_and_charge.fold(r, a)),
            (self.firmware.CONCERNS, lambda r, e, a: self.firmware.fold(r, e)),
        ]
        self._routes: dict[Kind, tuple[_Fold, ...]] = {}
        """The folds of each kind of event seen so far, in the order above."""

    def apply(self, recorded: Recorded) -> None:
        """Fold the next committed event into every projection it concerns (each
        projection's ``CONCERNS``)."""
        correlator = self._correlator
        exchange = correlator.feed(recorded)
        answered = result_only(exchange)
        action = correlator.action
        kind = type(recorded.event) if action is None else action
        folds = self._routes.get(kind)
        if folds is None:
            folds = self._route(kind)
        for fold in folds:
            fold(recorded, exchange, answered)
        self.position = recorded.position
        self.last_exchange = exchange
        self.last_kind = kind

    def _route(self, kind: Kind) -> tuple[_Fold, ...]:
        folds = self._routes[kind] = tuple(
            fold for concerns, fold in self._folds if not self._routed or routed_to(concerns, kind)
        )
        return folds

    @classmethod
    def replay(cls, records: Iterable[Recorded]) -> Views:
        """Fresh views folded from ``records`` (the log, in position order)."""
        views = cls()
        for recorded in records:
            views.apply(recorded)
        return views


def _time(at: float | None) -> str | None:
    """One of our times (UNIX seconds) as RFC 3339 UTC text, millisecond precision."""
    return None if at is None else rfc3339(at)


def _boot_json(boot: BootInfo) -> dict[str, Any]:
    return {
        "vendor": boot.vendor,
        "model": boot.model,
        "serial_number": boot.serial_number,
        "charge_box_serial_number": boot.charge_box_serial_number,
        "firmware_version": boot.firmware_version,
        "iccid": boot.iccid,
        "imsi": boot.imsi,
        "meter_type": boot.meter_type,
        "meter_serial_number": boot.meter_serial_number,
        "reason": boot.reason,
        "status": boot.status,
        "interval": boot.interval,
        "at": _time(boot.at),
    }


def _connector_json(connector: ConnectorState) -> dict[str, Any]:
    return {
        "status": connector.status,
        "error_code": connector.error_code,
        "info": connector.info,
        "vendor_id": connector.vendor_id,
        "vendor_error_code": connector.vendor_error_code,
        "timestamp": connector.timestamp,
        "at": _time(connector.at),
    }


def station_json(state: StationState) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/projections.md``)."""
    return {
        "station": state.station,
        "protocol": state.protocol,
        "connected": state.connected,
        "session": state.session,
        "node": state.node,
        "connected_at": _time(state.connected_at),
        "disconnected_at": _time(state.disconnected_at),
        "last_close_code": state.last_close_code,
        "boot": None if state.boot is None else _boot_json(state.boot),
        "accepted": state.accepted,
        "last_heartbeat": _time(state.last_heartbeat),
        "last_seen": _time(state.last_seen),
        "connectors": {
            str(connector_id): _connector_json(connector)
            for connector_id, connector in sorted(state.connectors.items())
        },
        "evses": {
            str(evse_id): {
                str(connector_id): _connector_json(connector)
                for connector_id, connector in sorted(connectors.items())
            }
            for evse_id, connectors in sorted(state.evses.items())
        },
        "configuration": {
            key: {"value": item.value, "readonly": item.readonly, "at": _time(item.at)}
            for key, item in sorted(state.configuration.items())
        },
        "unknown_configuration_keys": list(state.unknown_configuration_keys),
    }


def anomaly_json(anomaly: Anomaly) -> dict[str, Any]:
    """``anomaly`` as JSON-ready builtins."""
    return {
        "kind": anomaly.kind,
        "position": anomaly.position,
        "detail": anomaly.detail,
        "station": anomaly.station,
        "transaction_id": anomaly.transaction_id,
    }


def transaction_json(state: TransactionState) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/projections.md``)."""
    return {
        "transaction_id": state.transaction_id,
        "station": state.station,
        "protocol": state.protocol,
        "connector_id": state.connector_id,
        "evse_id": state.evse_id,
        "id_tag": state.id_tag,
        "id_token_type": state.id_token_type,
        "id_tag_status": state.id_tag_status,
        "status": state.status,
        "completeness": state.completeness,
        "start_timestamp": state.start_timestamp,
        "stop_timestamp": state.stop_timestamp,
        "meter_start": state.meter_start,
        "meter_stop": state.meter_stop,
        "meter_last_wh": state.meter_last_wh,
        "energy_wh": state.energy_wh,
        "stop_reason": state.stop_reason,
        "started_at": _time(state.started_at),
        "ended_at": _time(state.ended_at),
        "started_position": state.started_position,
        "positions": list(state.positions),
        "anomalies": [anomaly_json(anomaly) for anomaly in state.anomalies],
        "remote_start_id": state.remote_start_id,
        "charging_state": state.charging_state,
        "trigger_reasons": list(state.trigger_reasons),
        "offline": state.offline,
        "seq_nos": list(state.seq_nos),
        "started_seq_no": state.started_seq_no,
        "seq_no_gaps": [list(gap) for gap in state.seq_no_gaps],
        "messages_in_queue": state.messages_in_queue,
    }
