"""The stations projection: connection, boot, connector and EVSE status and configuration per
station."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar

import msgspec

from chargeledger.core.events import FrameLogged, Recorded, SessionClosed, SessionOpened
from chargeledger.projections.exchanges import (
    Exchange,
    ExchangeFold,
    Kind,
    as_dict,
    as_int,
    as_list,
    as_str,
    as_text,
    is_v16,
)

__all__ = [
    "BootInfo",
    "ConfigurationKey",
    "ConnectorState",
    "StationState",
    "StationsProjection",
    "evse_of_connector_16",
]


class BootInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The station's last answered BootNotification: what it said (strings as sent, ``None``
    when absent or not a string) and what we answered."""

    vendor: str | None
    model: str | None
    serial_number: str | None
    """1.6 ``chargePointSerialNumber``; 2.0.1 ``chargingStation.serialNumber``."""
    charge_box_serial_number: str | None
    """1.6 only (deprecated there)."""
    firmware_version: str | None
    iccid: str | None
    imsi: str | None
    meter_type: str | None
    """1.6 only."""
    meter_serial_number: str | None
    """1.6 only."""
    reason: str | None
    """2.0.1 only: why the station booted."""
    status: str | None
    """Our answer: ``Accepted``, ``Pending`` or ``Rejected``."""
    interval: int | None
    """The interval we answered with (heartbeat interval when Accepted, retry otherwise)."""
    at: float
    """When we answered."""


class ConnectorState(msgspec.Struct, frozen=True, kw_only=True):
    """A connector's last answered StatusNotification (1.6 connector 0, 2.0.1 EVSE 0: the
    station). 2.0.1 sends only the status and its time; the other fields are then ``None``."""

    status: str | None
    """1.6 ``status``, 2.0.1 ``connectorStatus``."""
    error_code: str | None
    info: str | None
    vendor_id: str | None
    vendor_error_code: str | None
    timestamp: str | None
    """The station's own time of the status, as sent."""
    at: float
    """When we answered."""


class ConfigurationKey(msgspec.Struct, frozen=True, kw_only=True):
    """One 1.6 configuration key as last reported or successfully changed."""

    key: str
    value: str | None
    """As reported; a non-string value (a field deviation) is kept as its JSON text."""
    readonly: bool
    at: float
    """When the station's CALLRESULT carrying it arrived."""


class StationState(msgspec.Struct, kw_only=True):
    """Everything known about one station. Read-only for everyone but the projection."""

    station: str
    protocol: str = ""
    """The subprotocol of its latest session."""
    connected: bool = False
    session: str | None = None
    """The current session while connected."""
    node: str = ""
    """The server process holding (or that last held) its session."""
    connected_at: float | None = None
    disconnected_at: float | None = None
    last_close_code: int | None = None
    boot: BootInfo | None = None
    accepted: bool = False
    """Its last answered BootNotification was Accepted (kept across reconnects)."""
    last_heartbeat: float | None = None
    """When we last answered a Heartbeat."""
    last_seen: float | None = None
    """When any frame, even an undecodable one, last arrived from it."""
    connectors: dict[int, ConnectorState] = {}
    """1.6 connectors by ``connectorId``."""
    evses: dict[int, dict[int, ConnectorState]] = {}
    """Both versions, by EVSE id then connector id: 2.0.1 as sent; a 1.6 connector N > 0 is
    EVSE N's connector 1, connector 0 is EVSE 0 connector 0 (the station)."""
    configuration: dict[str, ConfigurationKey] = {}
    unknown_configuration_keys: list[str] = []
    """Keys the station said it does not know or support, sorted."""


def _boot_16(state: StationState, exchange: Exchange) -> None:
    request, response = exchange.request, exchange.response
    _set_boot(
        state,
        BootInfo(
            vendor=as_str(request.get("chargePointVendor")),
            model=as_str(request.get("chargePointModel")),
            serial_number=as_str(request.get("chargePointSerialNumber")),
            charge_box_serial_number=as_str(request.get("chargeBoxSerialNumber")),
            firmware_version=as_str(request.get("firmwareVersion")),
            iccid=as_str(request.get("iccid")),
            imsi=as_str(request.get("imsi")),
            meter_type=as_str(request.get("meterType")),
            meter_serial_number=as_str(request.get("meterSerialNumber")),
            reason=None,
            status=as_str(response.get("status")),
            interval=as_int(response.get("interval")),
            at=exchange.at,
        ),
    )


def _boot_201(state: StationState, exchange: Exchange) -> None:
    request, response = exchange.request, exchange.response
    station = as_dict(request.get("chargingStation"))
    modem = as_dict(station.get("modem"))
    _set_boot(
        state,
        BootInfo(
            vendor=as_str(station.get("vendorName")),
            model=as_str(station.get("model")),
            serial_number=as_str(station.get("serialNumber")),
            charge_box_serial_number=None,
            firmware_version=as_str(station.get("firmwareVersion")),
            iccid=as_str(modem.get("iccid")),
            imsi=as_str(modem.get("imsi")),
            meter_type=None,
            meter_serial_number=None,
            reason=as_str(request.get("reason")),
            status=as_str(response.get("status")),
            interval=as_int(response.get("interval")),
            at=exchange.at,
        ),
    )


def _set_boot(state: StationState, boot: BootInfo) -> None:
    state.boot = boot
    state.accepted = boot.status == "Accepted"


def _heartbeat(state: StationState, exchange: Exchange) -> None:
    state.last_heartbeat = exchange.at


def evse_of_connector_16(connector_id: int) -> tuple[int, int]:
    """The (EVSE, connector) of a 1.6 connector: connector N > 0 is EVSE N's connector 1, and
    connector 0 (the station) is EVSE 0 connector 0."""
    return (connector_id, 1) if connector_id > 0 else (0, 0)


def _status_16(state: StationState, exchange: Exchange) -> None:
    request = exchange.request
    connector_id = as_int(request.get("connectorId"))
    if connector_id is None:
        return
    connector = ConnectorState(
        status=as_str(request.get("status")),
        error_code=as_str(request.get("errorCode")),
        info=as_str(request.get("info")),
        vendor_id=as_str(request.get("vendorId")),
        vendor_error_code=as_str(request.get("vendorErrorCode")),
        timestamp=as_str(request.get("timestamp")),
        at=exchange.at,
    )
    state.connectors[connector_id] = connector
    evse_id, evse_connector = evse_of_connector_16(connector_id)
    state.evses.setdefault(evse_id, {})[evse_connector] = connector


def _status_201(state: StationState, exchange: Exchange) -> None:
    request = exchange.request
    evse_id, connector_id = as_int(request.get("evseId")), as_int(request.get("connectorId"))
    if evse_id is None or connector_id is None:
        return
    state.evses.setdefault(evse_id, {})[connector_id] = ConnectorState(
        status=as_str(request.get("connectorStatus")),
        error_code=None,
        info=None,
        vendor_id=None,
        vendor_error_code=None,
        timestamp=as_str(request.get("timestamp")),
        at=exchange.at,
    )


def _get_configuration(state: StationState, exchange: Exchange) -> None:
    response = exchange.response
    reported: dict[str, ConfigurationKey] = {}
    for entry in as_list(response.get("configurationKey")):
        item = as_dict(entry)
        key = as_str(item.get("key"))
        if key is not None:
            reported[key] = ConfigurationKey(
                key=key,
                value=as_text(item.get("value")),
                readonly=item.get("readonly") is True,
                at=exchange.at,
            )
    if not as_list(exchange.request.get("key")):
        # Asked for every key: keys no longer listed are gone.
        state.configuration.clear()
    state.configuration.update(reported)
    unknown = {key for key in as_list(response.get("unknownKey")) if type(key) is str}
    _set_unknown(state, unknown, known=reported.keys())


def _change_configuration(state: StationState, exchange: Exchange) -> None:
    key = as_str(exchange.request.get("key"))
    status = exchange.response.get("status")
    if key is None:
        return
    if status == "NotSupported":
        _set_unknown(state, {key}, known=())
    elif status in ("Accepted", "RebootRequired"):
        # RebootRequired: the station stored the value; it takes effect after a reboot.
        earlier = state.configuration.get(key)
        state.configuration[key] = ConfigurationKey(
            key=key,
            value=as_text(exchange.request.get("value")),
            readonly=False if earlier is None else earlier.readonly,
            at=exchange.at,
        )
        _set_unknown(state, set(), known=(key,))


def _set_unknown(state: StationState, unknown: set[str], known: Any) -> None:
    for key in unknown:
        state.configuration.pop(key, None)
    keep = set(state.unknown_configuration_keys).difference(known)
    state.unknown_configuration_keys = sorted(keep | unknown)


_Handler = Callable[[StationState, Exchange], None]

_STATION_CALLS: dict[bool, dict[str, _Handler]] = {
    True: {"BootNotification": _boot_16, "Heartbeat": _heartbeat, "StatusNotification": _status_16},
    False: {
        "BootNotification": _boot_201,
        "Heartbeat": _heartbeat,
        "StatusNotification": _status_201,
    },
}
"""Handlers of CALLs the station sent and we answered, by ``is_v16`` then action."""

_CSMS_CALLS: dict[bool, dict[str, _Handler]] = {
    True: {"GetConfiguration": _get_configuration, "ChangeConfiguration": _change_configuration},
    False: {},
}
"""Handlers of CALLs we sent and the station answered, by ``is_v16`` then action."""


class StationsProjection(ExchangeFold):
    """Station state folded from the log (see ``docs/projections.md``)."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset({FrameLogged, SessionOpened, SessionClosed})
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationState] = {}

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes (what ``Views`` calls so that
        a frame is decoded once for every projection)."""
        event = recorded.event
        if isinstance(event, FrameLogged):
            if event.direction == "in":
                self._state(event.station).last_seen = event.at
        elif isinstance(event, SessionOpened):
            state = self._state(event.station)
            state.protocol = event.protocol
            state.connected = True
            state.session = event.session
            state.node = event.node
            state.connected_at = event.at
        elif isinstance(event, SessionClosed):
            closed = self._stations.get(event.station)
            # A replaced session closing late must not disconnect the station.
            if closed is not None and closed.session == event.session:
                closed.connected = False
                closed.session = None
                closed.disconnected_at = event.at
                closed.last_close_code = event.code
        if exchange is None:
            return
        handlers = _STATION_CALLS if exchange.origin == "in" else _CSMS_CALLS
        handler = handlers[is_v16(exchange.protocol)].get(exchange.action)
        if handler is not None and type(exchange.request) is type(exchange.response) is dict:
            handler(self._state(exchange.station), exchange)

    def get(self, station: str) -> StationState | None:
        """The state of ``station``, ``None`` when the log never mentioned it."""
        return self._stations.get(station)

    def all(self) -> list[StationState]:
        """Every station, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def _state(self, station: str) -> StationState:
        state = self._stations.get(station)
        if state is None:
            state = self._stations[station] = StationState(station=station)
        return state
