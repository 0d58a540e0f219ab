"""Version-neutral use cases: the request each protocol version needs, and its answer read back.

Pure functions: given the station's protocol and the use case's arguments they return a
:class:`Request` (action, payload, and how to read the answer). :data:`USE_CASES` declares
each use case once (name, argument struct, builder, role); ``CentralSystem`` sends it; plugins
may return ``SendCall(station, request.action, request.payload)`` for the same request. The
mapping between the versions is tabled in ``docs/ocpp201.md``; in short:

* **EVSE and connector.** A 1.6 connector N > 0 is 2.0.1 EVSE N's connector 1, connector 0 the
  station. ``connector_id`` given alone is that 1.6 numbering in either version;
  ``evse_id`` (with an optional ``connector_id`` within it) is the 2.0.1 numbering.
* **Configuration keys.** A key is a 1.6 configuration key, or a 2.0.1 variable in the
  :class:`~chargeledger.projections.device_model.VariableRef` key syntax
  (``Component.Variable``, ``OCPPCommCtrlr.MessageAttempts[TransactionEvent]``,
  ``EVSE@1.AvailabilityState``). The well-known 1.6 keys of ``KEYS_16_TO_201`` stand for
  their 2.0.1 variables and back; other 1.6 keys have no 2.0.1 variable.
* **Request ids.** 2.0.1 ``remoteStartId`` and report ``requestId`` are the ``request_id``
  the caller passes (the API hands out fresh ones); so is a reservation's ``reservationId``
  (1.6) / ``id`` (2.0.1): the CSMS allocates it.
* **Checks.** A use case may declare a ``check`` of its arguments against the station's
  state and the time, which ``CentralSystem`` runs before anything is recorded (a
  reservation's expiry must lie in the future): the builders stay pure.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from chargeledger.core import (
    usecases_diagnostics,
    usecases_display,
    usecases_firmware,
    usecases_pnc,
    usecases_smart_charging,
    usecases_tariffs,
)
from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.security import check_password
from chargeledger.core.times import rfc3339
from chargeledger.core.usecase_base import (
    ACCEPTED_STATUSES,
    ReportProbe,
    ReportProgress,
    Request,
    UseCase,
    UseCaseArgs,
    UseCaseResult,
    connector_16,
    evse_201,
    only_201,
    present,
    status_reader,
)
from chargeledger.projections import Views
from chargeledger.projections.certificates import CertificateHash
from chargeledger.projections.device_model import VariableRef
from chargeledger.projections.local_lists import ListEntry, UpdateType, send_local_list_payload
from chargeledger.projections.reservations import parse_time
from chargeledger.schemas import OCPP16, OCPP201

__all__ = [
    "ACCEPTED_STATUSES",
    "KEYS_16_TO_201",
    "USE_CASES",
    "LocalListLimits",
    "Request",
    "ResetKind",
    "UseCase",
    "UseCaseArgs",
    "UseCaseResult",
    "cancel_reservation",
    "change_availability",
    "change_configuration",
    "change_station_password",
    "check_reservation",
    "clear_cache",
    "configure",
    "configured_value",
    "data_transfer",
    "delete_certificate",
    "get_base_report",
    "get_installed_certificate_ids",
    "get_local_list_version",
    "get_report",
    "get_transaction_status",
    "install_certificate",
    "key_16",
    "local_list_limits",
    "local_list_too_large",
    "markdown_table",
    "model_report",
    "read_configuration",
    "remote_start",
    "remote_stop",
    "reserve_now",
    "reset",
    "send_local_list",
    "set_security_profile",
    "set_variables",
    "trigger_message",
    "unlock_connector",
    "use_case_of",
    "variable_ref",
]

ResetKind = Literal["soft", "hard", "on_idle", "immediate"]


KEYS_16_TO_201 = {
    "AllowOfflineTxForUnknownId": "AuthCtrlr.OfflineTxForUnknownIdEnabled",
    "AuthorizationCacheEnabled": "AuthCacheCtrlr.Enabled",
    "AuthorizeRemoteTxRequests": "AuthCtrlr.AuthorizeRemoteStart",
    "ClockAlignedDataInterval": "AlignedDataCtrlr.Interval",
    "ConnectionTimeOut": "TxCtrlr.EVConnectionTimeOut",
    "HeartbeatInterval": "OCPPCommCtrlr.HeartbeatInterval",
    "LocalAuthListEnabled": "LocalAuthListCtrlr.Enabled",
    "LocalAuthorizeOffline": "AuthCtrlr.LocalAuthorizeOffline",
    "LocalPreAuthorize": "AuthCtrlr.LocalPreAuthorize",
    "MeterValueSampleInterval": "SampledDataCtrlr.TxUpdatedInterval",
    "MeterValuesAlignedData": "AlignedDataCtrlr.Measurands",
    "MeterValuesSampledData": "SampledDataCtrlr.TxUpdatedMeasurands",
    "StopTransactionOnEVSideDisconnect": "TxCtrlr.StopTxOnEVSideDisconnect",
    "StopTransactionOnInvalidId": "TxCtrlr.StopTxOnInvalidId",
    "StopTxnAlignedData": "AlignedDataCtrlr.TxEndedMeasurands",
    "StopTxnSampledData": "SampledDataCtrlr.TxEndedMeasurands",
    "AuthorizationKey": "SecurityCtrlr.BasicAuthPassword",
    "WebSocketPingInterval": "OCPPCommCtrlr.WebSocketPingInterval",
}
"""Well-known 1.6 configuration keys and the 2.0.1 variables that mean the same."""

_KEYS_201_TO_16 = {variable: key for key, variable in KEYS_16_TO_201.items()}

_TRIGGER_201 = {"DiagnosticsStatusNotification": "LogStatusNotification"}
"""TriggerMessage messages named differently in 2.0.1 (by their 1.6 names)."""
_TRIGGER_16 = {name: name_16 for name_16, name in _TRIGGER_201.items()}


def variable_ref(key: str) -> VariableRef:
    """The 2.0.1 variable a use-case configuration key names (a well-known 1.6 key, or a
    variable key); ``UnsupportedUseCase`` when it names none."""
    ref = VariableRef.parse(KEYS_16_TO_201.get(key, key))
    if ref is None:
        raise UnsupportedUseCase(
            f"configuration key {key!r} has no OCPP 2.0.1 variable: name it Component.Variable"
        )
    return ref


def key_16(key: str) -> str:
    """The 1.6 configuration key a use-case configuration key names."""
    return _KEYS_201_TO_16.get(key, key)


def configured_value(views: Views, station: str, key: str) -> str | None:
    """The value the station's projections hold for a use-case configuration key (1.6
    configuration, 2.0.1 device model ``Actual`` attribute), ``None`` when unknown."""
    state = views.stations.get(station)
    if state is None:
        return None
    if state.protocol != OCPP201:  # as the projections do: 1.6 unless the session says 2.0.1
        item = state.configuration.get(key_16(key))
        return None if item is None else item.value
    model = views.device_model.get(station)
    return None if model is None else model.value(variable_ref(key).key)


def _tx_profile(protocol: str, limit_w: float, profile_id: int) -> dict[str, Any]:
    """A TxProfile limiting the transaction about to start to ``limit_w`` watts."""
    return usecases_smart_charging.charging_profile(
        protocol,
        profile_id,
        "TxProfile",
        [usecases_smart_charging.ProfilePeriod(0, limit_w)],
        unit="W",
        kind="Relative",
    )


def remote_start(
    protocol: str,
    id_token: str,
    evse_id: int | None = None,
    connector_id: int | None = None,
    charging_limit_w: float | None = None,
    *,
    request_id: int = 1,
    id_token_type: str = "Central",
) -> Request:
    """1.6 RemoteStartTransaction; 2.0.1 RequestStartTransaction with ``remoteStartId``
    ``request_id`` (2.0.1 starts on an EVSE: a connector within it is not chosen)."""
    profile = None
    if charging_limit_w is not None:
        profile = _tx_profile(protocol, charging_limit_w, request_id)
    if protocol == OCPP16:
        connector = connector_16(evse_id, connector_id)
        payload = present(idTag=id_token, connectorId=connector, chargingProfile=profile)
        return Request(protocol, "RemoteStartTransaction", payload)
    evse = evse_201(evse_id, connector_id)
    payload = present(
        idToken={"idToken": id_token, "type": id_token_type},
        remoteStartId=request_id,
        evseId=None if evse is None else evse["id"],
        chargingProfile=profile,
    )
    return Request(protocol, "RequestStartTransaction", payload)


def remote_stop(protocol: str, transaction_id: int | str) -> Request:
    """1.6 RemoteStopTransaction (integer ids); 2.0.1 RequestStopTransaction (string ids)."""
    if protocol != OCPP16:
        return Request(protocol, "RequestStopTransaction", {"transactionId": str(transaction_id)})
    if not isinstance(transaction_id, int):
        raise UnsupportedUseCase("OCPP 1.6 transaction ids are integers")
    return Request(protocol, "RemoteStopTransaction", {"transactionId": transaction_id})


def reset(protocol: str, kind: ResetKind, evse_id: int | None = None) -> Request:
    """``soft`` / ``on_idle``: 1.6 Soft, 2.0.1 OnIdle; ``hard`` / ``immediate``: 1.6 Hard,
    2.0.1 Immediate. Only 2.0.1 resets a single EVSE."""
    now = kind in ("hard", "immediate")
    if protocol != OCPP16:
        payload = present(type="Immediate" if now else "OnIdle", evseId=evse_id)
        return Request(protocol, "Reset", payload)
    if evse_id is not None:
        raise UnsupportedUseCase("OCPP 1.6 resets the whole station only")
    return Request(protocol, "Reset", {"type": "Hard" if now else "Soft"})


def change_availability(
    protocol: str, operative: bool, evse_id: int | None = None, connector_id: int | None = None
) -> Request:
    """The station (no ids), an EVSE or a connector, operative or inoperative."""
    if protocol == OCPP16:
        connector = connector_16(evse_id, connector_id) or 0
        payload = {"connectorId": connector, "type": "Operative" if operative else "Inoperative"}
    else:
        payload = present(
            operationalStatus="Operative" if operative else "Inoperative",
            evse=evse_201(evse_id, connector_id),
        )
    return Request(protocol, "ChangeAvailability", payload)


def unlock_connector(protocol: str, connector_id: int, evse_id: int | None = None) -> Request:
    if protocol == OCPP16:
        return Request(
            protocol, "UnlockConnector", {"connectorId": connector_16(evse_id, connector_id)}
        )
    evse = evse_201(evse_id, connector_id)
    if evse is None:
        raise UnsupportedUseCase("unlock which connector? connector 0 is the whole station")
    payload = {"evseId": evse["id"], "connectorId": evse.get("connectorId", 1)}
    return Request(protocol, "UnlockConnector", payload)


def _read_values(
    protocol: str, action: str, response: dict[str, Any], values: dict[str, Any], unknown: bool
) -> UseCaseResult:
    return UseCaseResult(
        protocol=protocol,
        action=action,
        status="PartiallyUnknown" if unknown else "Accepted",
        accepted=not unknown,
        response=response,
        values=values,
    )


def read_configuration(
    protocol: str, keys: list[str] | None = None, *, request_id: int = 1
) -> Request:
    """1.6 GetConfiguration; 2.0.1 GetVariables (``Actual`` attributes), or for every key a
    GetBaseReport ``ConfigurationInventory`` with ``requestId`` ``request_id``, whose values
    arrive later in NotifyReport (the API waits for them). ``values`` are keyed by the keys
    asked for; ``PartiallyUnknown`` when the station knows some of them not."""
    if protocol == OCPP16:
        asked = {key_16(key): key for key in keys or []}

        def read_16(response: dict[str, Any]) -> UseCaseResult:
            values = {
                asked.get(item["key"], item["key"]): item.get("value")
                for item in response.get("configurationKey", [])
            }
            unknown = bool(response.get("unknownKey"))
            return _read_values(protocol, "GetConfiguration", response, values, unknown)

        payload = present(key=None if keys is None else [key_16(key) for key in keys])
        return Request(protocol, "GetConfiguration", payload, read_16)
    if keys is None:
        return get_base_report(protocol, request_id, "ConfigurationInventory")
    refs = {variable_ref(key): key for key in keys}

    def read_201(response: dict[str, Any]) -> UseCaseResult:
        values: dict[str, Any] = {}
        unknown = False
        for result in response.get("getVariableResult", []):
            ref = VariableRef.from_wire(result.get("component"), result.get("variable"))
            key = None if ref is None else refs.get(ref)
            if key is not None and result.get("attributeStatus") == "Accepted":
                values[key] = result.get("attributeValue")
            else:
                unknown = True
        return _read_values(protocol, "GetVariables", response, values, unknown)

    data = [ref.to_wire() for ref in refs]
    return Request(protocol, "GetVariables", {"getVariableData": data}, read_201)


def set_variables(protocol: str, values: dict[str, str]) -> Request:
    """2.0.1 SetVariables of the ``Actual`` attribute of each key. The result's ``values``
    hold each key's ``attributeStatus``; its ``status`` is the first status that is not
    accepted, else ``RebootRequired`` when one needs a reboot, else ``Accepted``."""
    only_201(protocol, "SetVariables")
    refs = {variable_ref(key): key for key in values}
    data = [{**ref.to_wire(), "attributeValue": values[key]} for ref, key in refs.items()]

    def read(response: dict[str, Any]) -> UseCaseResult:
        statuses: dict[str, Any] = {}
        for result in response.get("setVariableResult", []):
            ref = VariableRef.from_wire(result.get("component"), result.get("variable"))
            key = None if ref is None else refs.get(ref)
            if key is not None:
                statuses[key] = result.get("attributeStatus")
        refused = [status for status in statuses.values() if status not in ACCEPTED_STATUSES]
        if refused or len(statuses) < len(values):
            status = str(refused[0]) if refused else "Rejected"
        else:
            status = "RebootRequired" if "RebootRequired" in statuses.values() else "Accepted"
        return UseCaseResult(
            protocol=protocol,
            action="SetVariables",
            status=status,
            accepted=status in ACCEPTED_STATUSES,
            response=response,
            values=statuses,
        )

    return Request(protocol, "SetVariables", {"setVariableData": data}, read)


def change_configuration(protocol: str, key: str, value: str) -> Request:
    """1.6 ChangeConfiguration; 2.0.1 SetVariables of the key's ``Actual`` attribute."""
    if protocol != OCPP16:
        return set_variables(protocol, {key: value})
    return Request(protocol, "ChangeConfiguration", {"key": key_16(key), "value": value})


def change_station_password(protocol: str, password: str | None) -> Request:
    """1.6 ChangeConfiguration ``AuthorizationKey``; 2.0.1 SetVariables of
    ``SecurityCtrlr.BasicAuthPassword``. ``ValueError`` when ``password`` is ``None`` or
    breaks the password rules (``CentralSystem`` generates one when none is given)."""
    if password is None:
        raise ValueError("change_station_password needs the new password")
    check_password(password)
    return change_configuration(protocol, "AuthorizationKey", password)


def set_security_profile(
    protocol: str,
    profile: int,
    csms_url: str | None = None,
    configuration_slot: int = 1,
    ocpp_interface: str = "Wired0",
    message_timeout: int = 30,
) -> Request:
    """1.6 ChangeConfiguration ``SecurityProfile`` (the station reconnects with it, security
    whitepaper); 2.0.1 SetNetworkProfile of a connection profile in ``configuration_slot`` at
    ``csms_url`` (needed) with the new profile. In 2.0.1 the station uses it after
    ``OCPPCommCtrlr.NetworkConfigurationPriority`` lists the slot and a reset."""
    if protocol == OCPP16:
        return change_configuration(protocol, "SecurityProfile", str(profile))
    if csms_url is None:
        raise UnsupportedUseCase("set_security_profile in OCPP 2.0.1 needs csms_url")
    connection = {
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": csms_url,
        "messageTimeout": message_timeout,
        "securityProfile": profile,
        "ocppInterface": ocpp_interface,
    }
    payload = {"configurationSlot": configuration_slot, "connectionData": connection}
    return Request(protocol, "SetNetworkProfile", payload)


def configure(protocol: str, values: dict[str, str]) -> list[Request]:
    """The requests that set every key of ``values``: one 1.6 ChangeConfiguration per key,
    or one 2.0.1 SetVariables for all of them."""
    if protocol != OCPP16:
        return [set_variables(protocol, values)]
    return [change_configuration(protocol, key, value) for key, value in values.items()]


def trigger_message(
    protocol: str, message: str, evse_id: int | None = None, connector_id: int | None = None
) -> Request:
    """Ask for ``message``; 1.6 DiagnosticsStatusNotification is 2.0.1 LogStatusNotification."""
    if protocol == OCPP16:
        payload = present(
            requestedMessage=_TRIGGER_16.get(message, message),
            connectorId=connector_16(evse_id, connector_id),
        )
    else:
        payload = present(
            requestedMessage=_TRIGGER_201.get(message, message),
            evse=evse_201(evse_id, connector_id),
        )
    return Request(protocol, "TriggerMessage", payload)


def clear_cache(protocol: str) -> Request:
    return Request(protocol, "ClearCache", {})


def data_transfer(
    protocol: str, vendor_id: str, message_id: str | None = None, data: str | None = None
) -> Request:
    payload = present(vendorId=vendor_id, messageId=message_id, data=data)
    return Request(protocol, "DataTransfer", payload)


def model_report(request_id: int) -> ReportProbe:
    """The probe of a device-model report: complete once every NotifyReport part of
    ``request_id`` is folded; ``values``: each variable's ``Actual`` value then."""

    def probe(views: Views, station: str) -> ReportProgress:
        model = views.device_model.get(station)
        report = None if model is None else model.reports.get(request_id)
        values = {} if model is None else model.values()
        return ReportProgress(report is not None and report.complete, values)

    return probe


def get_base_report(protocol: str, request_id: int, report_base: str = "FullInventory") -> Request:
    """2.0.1 GetBaseReport; the report arrives in NotifyReport parts (``views.device_model``)."""
    only_201(protocol, "GetBaseReport")
    payload = {"requestId": request_id, "reportBase": report_base}
    return Request(protocol, "GetBaseReport", payload, report=model_report(request_id))


def get_report(
    protocol: str,
    request_id: int,
    keys: list[str] | None = None,
    criteria: list[str] | None = None,
) -> Request:
    """2.0.1 GetReport of the variables ``keys`` name and/or the components matching
    ``criteria`` (``Active``, ``Available``, ``Enabled``, ``Problem``)."""
    only_201(protocol, "GetReport")
    component_variable = None if keys is None else [variable_ref(key).to_wire() for key in keys]
    payload = present(
        requestId=request_id, componentVariable=component_variable, componentCriteria=criteria
    )
    return Request(protocol, "GetReport", payload, report=model_report(request_id))


def get_transaction_status(protocol: str, transaction_id: str | None = None) -> Request:
    """2.0.1 GetTransactionStatus; ``status`` is ``MessagesInQueue`` or ``NoMessagesInQueue``,
    the raw answer (with ``ongoingIndicator``) is in ``response``."""
    only_201(protocol, "GetTransactionStatus")

    def read(response: dict[str, Any]) -> UseCaseResult:
        queued = response.get("messagesInQueue") is True
        return UseCaseResult(
            protocol=protocol,
            action="GetTransactionStatus",
            status="MessagesInQueue" if queued else "NoMessagesInQueue",
            accepted=True,
            response=response,
        )

    payload = present(transactionId=transaction_id)
    return Request(protocol, "GetTransactionStatus", payload, read)


# -- reservations (1.6 Reservation, 2.0.1 H) -------------------------------------------------


def _expiry(expiry: str) -> float:
    at = parse_time(expiry)
    if at is None:
        raise InvalidUseCaseArguments(f"expiry {expiry!r} is not an RFC 3339 time")
    return at


def reserve_now(
    protocol: str,
    reservation_id: int,
    id_token: str,
    expiry: str,
    evse_id: int | None = None,
    connector_id: int | None = None,
    group_id_token: str | None = None,
    id_token_type: str = "Central",
) -> Request:
    """ReserveNow of a connector (1.6 ``connectorId``; no ids or connector 0: any connector
    of the station), or of an EVSE (2.0.1 ``evseId``; no ids: the whole station) for
    ``id_token`` (1.6 ``idTag``) and its group (1.6 ``parentIdTag``, 2.0.1 ``groupIdToken``)
    until ``expiry`` (RFC 3339, sent in UTC). ``values`` of the result hold the
    ``reservation_id``. ``InvalidUseCaseArguments`` when ``expiry`` is not a time (whether
    it lies in the future is :func:`check_reservation`'s business: it needs the clock)."""
    expiry_date = rfc3339(_expiry(expiry))
    if protocol == OCPP16:
        payload = present(
            connectorId=connector_16(evse_id, connector_id) or 0,
            expiryDate=expiry_date,
            idTag=id_token,
            reservationId=reservation_id,
            parentIdTag=group_id_token,
        )
    else:
        evse = evse_201(evse_id, connector_id)
        payload = present(
            id=reservation_id,
            expiryDateTime=expiry_date,
            idToken={"idToken": id_token, "type": id_token_type},
            evseId=None if evse is None else evse["id"],
            groupIdToken=None
            if group_id_token is None
            else {"idToken": group_id_token, "type": id_token_type},
        )

    read = status_reader(protocol, "ReserveNow", {"reservation_id": reservation_id})
    return Request(protocol, "ReserveNow", payload, read)


def check_reservation(
    views: Views,
    station: str,
    protocol: str,
    now: float,
    expiry: str,
    evse_id: int | None = None,
    connector_id: int | None = None,
) -> None:
    """Refuse, before anything is recorded or sent, a reservation whose ``expiry`` is not
    after ``now`` (``InvalidUseCaseArguments``), and a 1.6 reservation of the whole station
    (connector 0) unless the station's ``ReserveConnectorZeroSupported`` is known to be
    ``true`` (``UnsupportedUseCase``: read it first with ``read_configuration``)."""
    at = _expiry(expiry)
    if at <= now:
        raise InvalidUseCaseArguments(
            f"expiry {expiry} is not in the future (now is {rfc3339(now)}): nothing was sent"
        )
    if protocol == OCPP16 and not connector_16(evse_id, connector_id):
        supported = configured_value(views, station, "ReserveConnectorZeroSupported")
        if (supported or "").lower() != "true":
            raise UnsupportedUseCase(
                f"{station} does not say ReserveConnectorZeroSupported=true"
                f" (it says {supported!r}): reserve a connector"
            )


def cancel_reservation(protocol: str, reservation_id: int) -> Request:
    """CancelReservation (the same in both versions)."""
    return Request(protocol, "CancelReservation", {"reservationId": reservation_id})


# -- certificates (2.0.1 M, the 1.6 security extension) --------------------------------------

_CERTIFICATE_TYPES_16 = {"CSMSRootCertificate": "CentralSystemRootCertificate"}
"""Certificate types named differently in 1.6 (by their 2.0.1 names)."""


def _certificate_type(protocol: str, certificate_type: str) -> str:
    """``certificate_type`` as the station's version names it: ``CSMSRootCertificate`` and
    ``CentralSystemRootCertificate`` are one type; the other 2.0.1 types have no 1.6 name."""
    if protocol != OCPP16:
        return {name_16: name for name, name_16 in _CERTIFICATE_TYPES_16.items()}.get(
            certificate_type, certificate_type
        )
    named = _CERTIFICATE_TYPES_16.get(certificate_type, certificate_type)
    if named not in _CERTIFICATE_TYPES_16.values() and named != "ManufacturerRootCertificate":
        raise UnsupportedUseCase(f"OCPP 1.6 has no certificate type {certificate_type!r}")
    return named


def install_certificate(protocol: str, certificate_type: str, certificate: str) -> Request:
    """InstallCertificate of a PEM root ``certificate`` of ``certificate_type``."""
    payload = {
        "certificateType": _certificate_type(protocol, certificate_type),
        "certificate": certificate,
    }
    return Request(protocol, "InstallCertificate", payload)


def delete_certificate(
    protocol: str,
    hash_algorithm: str,
    issuer_name_hash: str,
    issuer_key_hash: str,
    serial_number: str,
) -> Request:
    """DeleteCertificate of the certificate its hash data names (the same in both versions);
    ``status`` ``Accepted``, ``Failed`` or ``NotFound``."""
    hash_data = {
        "hashAlgorithm": hash_algorithm,
        "issuerNameHash": issuer_name_hash,
        "issuerKeyHash": issuer_key_hash,
        "serialNumber": serial_number,
    }
    return Request(protocol, "DeleteCertificate", {"certificateHashData": hash_data})


def get_installed_certificate_ids(
    protocol: str, certificate_types: list[str] | None = None
) -> Request:
    """GetInstalledCertificateIds; ``values`` map each certificate's hash data, as
    ``SHA256:<issuer name hash>:<issuer key hash>:<serial>`` (``CertificateHash.key``), to
    its type. 1.6 asks for
    exactly one type; 2.0.1 for several, or every type when none is named."""
    types = [_certificate_type(protocol, name) for name in certificate_types or []]
    if protocol == OCPP16:
        if len(types) != 1:
            raise UnsupportedUseCase("OCPP 1.6 asks for the certificates of one type at a time")
        payload: dict[str, Any] = {"certificateType": types[0]}
    else:
        payload = present(certificateType=types or None)

    def read(response: dict[str, Any]) -> UseCaseResult:
        if protocol == OCPP16:
            found = [(types[0], item) for item in response.get("certificateHashData", [])]
        else:
            found = [
                (chain.get("certificateType"), chain.get("certificateHashData", {}))
                for chain in response.get("certificateHashDataChain", [])
            ]
        values = {
            hash_data.key: certificate_type
            for certificate_type, data in found
            if (hash_data := CertificateHash.from_wire(data)) is not None
        }
        status = str(response.get("status", ""))
        return UseCaseResult(
            protocol=protocol,
            action="GetInstalledCertificateIds",
            status=status,
            accepted=status in ACCEPTED_STATUSES,
            response=response,
            values=values,
        )

    return Request(protocol, "GetInstalledCertificateIds", payload, read)


# -- local authorization lists (docs/authorization.md) ----------------------------------------


def send_local_list(
    protocol: str, version: int, update_type: UpdateType, entries: list[ListEntry]
) -> Request:
    """SendLocalList (1.6 ``listVersion``, 2.0.1 ``versionNumber``) of ``entries``; an entry
    without ``status`` removes the token (differential updates only). ``status``
    ``Accepted``, ``Failed``, ``VersionMismatch`` or (1.6) ``NotSupported``."""
    if update_type == "Full" and any(entry.status is None for entry in entries):
        raise ValueError("a full update lists tokens with their status: removals are differential")
    if version < 1:
        raise ValueError("a local list version is 1 or more")
    return Request(
        protocol, "SendLocalList", send_local_list_payload(protocol, version, update_type, entries)
    )


class LocalListLimits(msgspec.Struct, frozen=True):
    """How a station takes local lists: entries per SendLocalList and the most entries its
    list may hold (``None``: not known, not limited)."""

    items_per_message: int
    max_length: int | None


def local_list_limits(views: Views, station: str, default_items: int) -> LocalListLimits:
    """The station's limits as its projections show them: 1.6 ``SendLocalListMaxLength`` and
    ``LocalAuthListMaxLength`` (configuration), 2.0.1 ``LocalAuthListCtrlr.ItemsPerMessage``
    and the ``maxLimit`` of ``LocalAuthListCtrlr.Entries`` (device model); ``default_items``
    per message when the station's value is unknown or not a positive integer."""
    state = views.stations.get(station)
    if state is None or state.protocol != OCPP201:
        items = configured_value(views, station, "SendLocalListMaxLength")
        length = configured_value(views, station, "LocalAuthListMaxLength")
    else:
        items = configured_value(views, station, "LocalAuthListCtrlr.ItemsPerMessage")
        model = views.device_model.get(station)
        entries = None if model is None else model.variables.get("LocalAuthListCtrlr.Entries")
        limit = (
            None
            if entries is None or entries.characteristics is None
            else (entries.characteristics.max_limit)
        )
        length = None if limit is None else str(int(limit))
    return LocalListLimits(
        items_per_message=_positive(items) or default_items, max_length=_positive(length)
    )


def local_list_too_large(views: Views, station: str) -> bool:
    """Whether what ``station``'s local lists select is more than its list may hold (its
    ``LocalAuthListMaxLength`` / ``LocalAuthListCtrlr.Entries`` maximum, when known): such a
    list is not sent."""
    state = views.stations.get(station)
    if state is None:
        return False
    limit = local_list_limits(views, station, 1).max_length
    desired = views.local_lists.desired(station, state.protocol, views.tokens.all())
    return limit is not None and len(desired) > limit


def _positive(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else 0
    except ValueError:
        return None
    return value if value > 0 else None


def get_local_list_version(protocol: str) -> Request:
    """GetLocalListVersion; ``values["version"]``: the station's list version (0: no list,
    1.6 -1: no local list support)."""

    def read(response: dict[str, Any]) -> UseCaseResult:
        version = response.get("listVersion", response.get("versionNumber"))
        return UseCaseResult(
            protocol=protocol,
            action="GetLocalListVersion",
            status="Accepted",
            accepted=True,
            response=response,
            values={"version": version},
        )

    return Request(protocol, "GetLocalListVersion", {}, read)


# -- the table: each use case declared once ---------------------------------------------------
#
# The CentralSystem methods, the HTTP API's request union and its OpenAPI schema, the CLI's
# ``command`` and the use-case list of docs/api.md are all derived from ``USE_CASES``.


class RemoteStartArgs(UseCaseArgs, tag="remote_start"):
    """Start a charging session for ``id_token`` (1.6 RemoteStartTransaction; 2.0.1
    RequestStartTransaction with a fresh ``remoteStartId`` and an ``idToken`` of
    ``id_token_type``), limited to ``charging_limit_w`` watts by a TxProfile."""

    id_token: str
    evse_id: int | None = None
    connector_id: int | None = None
    charging_limit_w: float | None = None
    id_token_type: str = "Central"


class RemoteStopArgs(UseCaseArgs, tag="remote_stop"):
    """Stop a transaction (1.6 RemoteStopTransaction with its integer id; 2.0.1
    RequestStopTransaction with the station's id)."""

    transaction_id: int | str


class ResetArgs(UseCaseArgs, tag="reset"):
    """Reset the station (or, 2.0.1 only, one EVSE): ``soft`` / ``on_idle`` (1.6 Soft, 2.0.1
    OnIdle) or ``hard`` / ``immediate`` (1.6 Hard, 2.0.1 Immediate)."""

    kind: ResetKind = "soft"
    evse_id: int | None = None


class ChangeAvailabilityArgs(UseCaseArgs, tag="change_availability"):
    """Make the station (no ids), an EVSE or a connector operative or inoperative."""

    operative: bool
    evse_id: int | None = None
    connector_id: int | None = None


class UnlockConnectorArgs(UseCaseArgs, tag="unlock_connector"):
    """Unlock a connector's cable."""

    connector_id: int
    evse_id: int | None = None


class ReadConfigurationArgs(UseCaseArgs, tag="read_configuration"):
    """Read configuration keys (all when ``keys`` is absent); ``values`` of the result map
    each key to its value (1.6 GetConfiguration; 2.0.1 GetVariables, or without ``keys`` a
    ConfigurationInventory report, awaited, keyed by variable key)."""

    keys: list[str] | None = None


class ChangeConfigurationArgs(UseCaseArgs, tag="change_configuration"):
    """Set one configuration key (1.6 ChangeConfiguration, 2.0.1 SetVariables)."""

    key: str
    value: str


class TriggerMessageArgs(UseCaseArgs, tag="trigger_message"):
    """Ask the station to send ``message`` (``StatusNotification``, ``Heartbeat``, ...)."""

    message: str
    evse_id: int | None = None
    connector_id: int | None = None


class ClearCacheArgs(UseCaseArgs, tag="clear_cache"):
    """Clear the station's authorization cache."""


class DataTransferArgs(UseCaseArgs, tag="data_transfer"):
    """Send a vendor-specific DataTransfer."""

    vendor_id: str
    message_id: str | None = None
    data: str | None = None


class GetBaseReportArgs(UseCaseArgs, tag="get_base_report"):
    """2.0.1: ask for a base report (``FullInventory``, ``ConfigurationInventory``,
    ``SummaryInventory``) and wait for all its parts (the station's device model)."""

    report_base: str = "FullInventory"


class GetReportArgs(UseCaseArgs, tag="get_report"):
    """2.0.1: ask for a report of some variables and/or component criteria (``Active``,
    ``Available``, ``Enabled``, ``Problem``) and wait for all its parts."""

    keys: list[str] | None = None
    criteria: list[str] | None = None


class SetVariablesArgs(UseCaseArgs, tag="set_variables"):
    """2.0.1: set several variables in one SetVariables; ``values`` of the result hold each
    key's ``attributeStatus``."""

    values: dict[str, str]


class GetTransactionStatusArgs(UseCaseArgs, tag="get_transaction_status"):
    """2.0.1: whether the station still queues messages (of the transaction, when named)."""

    transaction_id: str | None = None


# -- station security (docs/security.md) -----------------------------------------------------


class ChangeStationPasswordArgs(UseCaseArgs, tag="change_station_password"):
    """Rotate the station's HTTP Basic password (1.6 ``AuthorizationKey``, 2.0.1
    ``SecurityCtrlr.BasicAuthPassword``); generated when not given and returned once in
    ``values``. Only its hash is recorded; old and new are both accepted until the station
    connects with the new one."""

    password: Annotated[str, msgspec.Meta(min_length=16, max_length=40)] | None = None


class SetSecurityProfileArgs(UseCaseArgs, tag="set_security_profile"):
    """Upgrade the station's security profile: 1.6 ``SecurityProfile``, 2.0.1
    SetNetworkProfile (``csms_url`` needed; then set ``NetworkConfigurationPriority`` and
    ``reset``). The registered profile rises once the station connects meeting it."""

    profile: Annotated[int, msgspec.Meta(ge=1, le=3)]
    csms_url: str | None = None
    configuration_slot: int = 1


# -- reservations (docs/authorization.md) ---------------------------------------------------


class ReserveNowArgs(UseCaseArgs, tag="reserve_now"):
    """Reserve a connector (1.6) or EVSE (2.0.1), or with neither the whole station (1.6 only
    when it says `ReserveConnectorZeroSupported`), for `id_token` (and its group) until
    `expiry` (RFC 3339, in the future or nothing is sent). The CSMS allocates the reservation
    id: `values.reservation_id`. Followed in `/api/reservations` until used, cancelled or
    expired."""

    id_token: str
    expiry: str
    evse_id: int | None = None
    connector_id: int | None = None
    group_id_token: str | None = None
    id_token_type: str = "Central"


class CancelReservationArgs(UseCaseArgs, tag="cancel_reservation"):
    """Cancel the reservation `reservation_id` (as `reserve_now` returned it)."""

    reservation_id: int


# -- certificates ------------------------------------------------------------------------------


class InstallCertificateArgs(UseCaseArgs, tag="install_certificate"):
    """Install a PEM root certificate on the station: ``certificate_type``
    ``CSMSRootCertificate`` (1.6 ``CentralSystemRootCertificate``: either name),
    ``ManufacturerRootCertificate``, and 2.0.1 only ``V2GRootCertificate``,
    ``MORootCertificate``. Folds into the certificate projection."""

    certificate_type: str
    certificate: str


class DeleteCertificateArgs(UseCaseArgs, tag="delete_certificate"):
    """Delete the certificate its OCPP hash data names (as `get_installed_certificate_ids`
    and the certificate projection show it); `status` `Accepted`, `Failed` or `NotFound`."""

    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    hash_algorithm: str = "SHA256"


class GetInstalledCertificateIdsArgs(UseCaseArgs, tag="get_installed_certificate_ids"):
    """List the certificates the station holds of ``certificate_types`` (1.6: exactly one;
    2.0.1: every type when absent); ``values`` map each one's hash data to its type, and the
    list replaces those types in the certificate projection."""

    certificate_types: list[str] | None = None


# -- local authorization lists ---------------------------------------------------------------


class SendLocalListArgs(UseCaseArgs, tag="send_local_list"):
    """Send the station a local authorization list of `entries` as `version`: a `Full`
    update replaces its list, a `Differential` one adds, changes and (entries without
    `status`) removes tokens. Folds into the local-list projection; lists defined with
    `chargeledger lists` are kept in sync by the local_list plugin instead."""

    version: Annotated[int, msgspec.Meta(ge=1)]
    update_type: UpdateType = "Full"
    entries: list[ListEntry] = []


class GetLocalListVersionArgs(UseCaseArgs, tag="get_local_list_version"):
    """Ask the station which local list version it holds (`values.version`); one other than
    the acknowledged version makes the next update a full one."""


def _table(*use_cases: UseCase[Any]) -> dict[str, UseCase[Any]]:
    table = {use_case.name: use_case for use_case in use_cases}
    for name, use_case in table.items():
        if use_case.args.__struct_config__.tag != name:
            raise AssertionError(f"use case {name!r}: its argument struct has another tag")
    return table


_CORE_USE_CASES: tuple[UseCase[Any], ...] = (
    UseCase[RemoteStartArgs](
        "remote_start",
        RemoteStartArgs,
        lambda protocol, a, request_id: remote_start(
            protocol,
            a.id_token,
            a.evse_id,
            a.connector_id,
            a.charging_limit_w,
            request_id=request_id,
            id_token_type=a.id_token_type,
        ),
    ),
    UseCase[RemoteStopArgs](
        "remote_stop",
        RemoteStopArgs,
        lambda protocol, a, _: remote_stop(protocol, a.transaction_id),
    ),
    UseCase[ResetArgs](
        "reset", ResetArgs, lambda protocol, a, _: reset(protocol, a.kind, a.evse_id)
    ),
    UseCase[ChangeAvailabilityArgs](
        "change_availability",
        ChangeAvailabilityArgs,
        lambda protocol, a, _: change_availability(
            protocol, a.operative, a.evse_id, a.connector_id
        ),
    ),
    UseCase[UnlockConnectorArgs](
        "unlock_connector",
        UnlockConnectorArgs,
        lambda protocol, a, _: unlock_connector(protocol, a.connector_id, a.evse_id),
    ),
    UseCase[ReadConfigurationArgs](
        "read_configuration",
        ReadConfigurationArgs,
        lambda protocol, a, request_id: read_configuration(protocol, a.keys, request_id=request_id),
    ),
    UseCase[ChangeConfigurationArgs](
        "change_configuration",
        ChangeConfigurationArgs,
        lambda protocol, a, _: change_configuration(protocol, a.key, a.value),
    ),
    UseCase[TriggerMessageArgs](
        "trigger_message",
        TriggerMessageArgs,
        lambda protocol, a, _: trigger_message(protocol, a.message, a.evse_id, a.connector_id),
    ),
    UseCase[ClearCacheArgs](
        "clear_cache", ClearCacheArgs, lambda protocol, a, _: clear_cache(protocol)
    ),
    UseCase[DataTransferArgs](
        "data_transfer",
        DataTransferArgs,
        lambda protocol, a, _: data_transfer(protocol, a.vendor_id, a.message_id, a.data),
    ),
    UseCase[GetBaseReportArgs](
        "get_base_report",
        GetBaseReportArgs,
        lambda protocol, a, request_id: get_base_report(protocol, request_id, a.report_base),
    ),
    UseCase[GetReportArgs](
        "get_report",
        GetReportArgs,
        lambda protocol, a, request_id: get_report(protocol, request_id, a.keys, a.criteria),
    ),
    UseCase[SetVariablesArgs](
        "set_variables",
        SetVariablesArgs,
        lambda protocol, a, _: set_variables(protocol, a.values),
    ),
    UseCase[GetTransactionStatusArgs](
        "get_transaction_status",
        GetTransactionStatusArgs,
        lambda protocol, a, _: get_transaction_status(protocol, a.transaction_id),
    ),
    # station security (docs/security.md)
    UseCase[ChangeStationPasswordArgs](
        "change_station_password",
        ChangeStationPasswordArgs,
        lambda protocol, a, _: change_station_password(protocol, a.password),
        role="admin",
        secret="password",
    ),
    UseCase[SetSecurityProfileArgs](
        "set_security_profile",
        SetSecurityProfileArgs,
        lambda protocol, a, _: set_security_profile(
            protocol, a.profile, a.csms_url, a.configuration_slot
        ),
        role="admin",
    ),
    # reservations
    UseCase[ReserveNowArgs](
        "reserve_now",
        ReserveNowArgs,
        lambda protocol, a, request_id: reserve_now(
            protocol,
            request_id,
            a.id_token,
            a.expiry,
            a.evse_id,
            a.connector_id,
            a.group_id_token,
            a.id_token_type,
        ),
        check=lambda views, station, protocol, a, now: check_reservation(
            views, station, protocol, now, a.expiry, a.evse_id, a.connector_id
        ),
    ),
    UseCase[CancelReservationArgs](
        "cancel_reservation",
        CancelReservationArgs,
        lambda protocol, a, _: cancel_reservation(protocol, a.reservation_id),
    ),
    # certificates
    UseCase[InstallCertificateArgs](
        "install_certificate",
        InstallCertificateArgs,
        lambda protocol, a, _: install_certificate(protocol, a.certificate_type, a.certificate),
        role="admin",
    ),
    UseCase[DeleteCertificateArgs](
        "delete_certificate",
        DeleteCertificateArgs,
        lambda protocol, a, _: delete_certificate(
            protocol, a.hash_algorithm, a.issuer_name_hash, a.issuer_key_hash, a.serial_number
        ),
        role="admin",
    ),
    UseCase[GetInstalledCertificateIdsArgs](
        "get_installed_certificate_ids",
        GetInstalledCertificateIdsArgs,
        lambda protocol, a, _: get_installed_certificate_ids(protocol, a.certificate_types),
    ),
    # local authorization lists (docs/authorization.md)
    UseCase[SendLocalListArgs](
        "send_local_list",
        SendLocalListArgs,
        lambda protocol, a, _: send_local_list(protocol, a.version, a.update_type, a.entries),
    ),
    UseCase[GetLocalListVersionArgs](
        "get_local_list_version",
        GetLocalListVersionArgs,
        lambda protocol, a, _: get_local_list_version(protocol),
    ),
)

# Functional blocks declare their use cases in modules of their own (core/usecases_<block>.py,
# each a tuple USE_CASES); one line each below.
USE_CASES: dict[str, UseCase[Any]] = _table(
    *_CORE_USE_CASES,
    *usecases_display.USE_CASES,
    *usecases_diagnostics.USE_CASES,
    *usecases_tariffs.USE_CASES,
    *usecases_smart_charging.USE_CASES,
    *usecases_pnc.USE_CASES,
    *usecases_firmware.USE_CASES,
)
"""Every use case, by name."""


def use_case_of(args: UseCaseArgs) -> UseCase[Any]:
    """The use case ``args`` are the arguments of."""
    name = type(args).__struct_config__.tag
    assert isinstance(name, str)
    return USE_CASES[name]


def markdown_table() -> str:
    """The use cases as the markdown table of docs/api.md (a test keeps the two equal)."""
    rows = ["| use case | arguments | role | what it does |", "|---|---|---|---|"]
    for use_case in USE_CASES.values():
        arguments = ", ".join(
            f"`{field.name}`" + ("" if field.required else "?")
            for field in msgspec.structs.fields(use_case.args)
        )
        rows.append(
            f"| `{use_case.name}` | {arguments or '-'} | {use_case.role} | {use_case.summary} |"
        )
    return "\n".join(rows) + "\n"
