"""Use cases of diagnostics, logs, monitoring and customer information (1.6 Diagnostics and
the security extension's GetLog; 2.0.1 N): the requests and how their answers read.

Uploads are followed in ``views.logs``, monitors in ``views.monitors``, customer
information in ``views.customer_information`` (docs/device-management.md). The report use
cases (``get_monitoring_report``, ``customer_information`` with ``report``) wait for the
station's parts like the device-model reports do (``Request.report``, a probe of the views).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from chargeledger.core.usecase_base import (
    ACCEPTED_STATUSES,
    ReportProbe,
    ReportProgress,
    Request,
    UseCase,
    UseCaseArgs,
    UseCaseResult,
    only_201,
    present,
    utc_argument,
)
from chargeledger.projections import Views
from chargeledger.projections.monitors import match_monitoring_results, monitor_json
from chargeledger.schemas import OCPP16

__all__ = [
    "USE_CASES",
    "ClearVariableMonitoringArgs",
    "CustomerCertificate",
    "CustomerInformationArgs",
    "GetDiagnosticsArgs",
    "GetLogArgs",
    "GetMonitoringReportArgs",
    "LogType",
    "MonitorSetting",
    "SetMonitoringBaseArgs",
    "SetMonitoringLevelArgs",
    "SetVariableMonitoringArgs",
    "clear_variable_monitoring",
    "customer_information",
    "get_diagnostics",
    "get_log",
    "get_monitoring_report",
    "set_monitoring_base",
    "set_monitoring_level",
    "set_variable_monitoring",
]

LogType = Literal["DiagnosticsLog", "SecurityLog"]
MonitorType = Literal[
    "UpperThreshold", "LowerThreshold", "Delta", "Periodic", "PeriodicClockAligned"
]
MonitoringBase = Literal["All", "FactoryDefault", "HardWiredOnly"]
MonitoringCriterion = Literal["ThresholdMonitoring", "DeltaMonitoring", "PeriodicMonitoring"]
Severity = Annotated[int, msgspec.Meta(ge=0, le=9)]
Count = Annotated[int, msgspec.Meta(ge=0)]


def _result(
    protocol: str,
    action: str,
    response: dict[str, Any],
    status: str,
    values: dict[str, Any],
    accepted: frozenset[str] = ACCEPTED_STATUSES,
) -> UseCaseResult:
    return UseCaseResult(
        protocol=protocol,
        action=action,
        status=status,
        accepted=status in accepted,
        response=response,
        values=values,
    )


def _variable(key: str) -> dict[str, Any]:
    """The wire ``component`` and ``variable`` of a use-case variable key."""
    # Imported here: the table in ``usecases`` imports this module.
    from chargeledger.core.usecases import variable_ref

    return variable_ref(key).to_wire()


def _time(name: str, text: str | None) -> str | None:
    """``text`` (RFC 3339) sent in UTC; ``InvalidUseCaseArguments`` when it is no time."""
    return utc_argument(name, text)


# -- diagnostics and logs (1.6 GetDiagnostics, 1.6 security extension and 2.0.1 GetLog) ------


def get_log(
    protocol: str,
    request_id: int,
    log_type: str,
    remote_location: str,
    oldest_timestamp: str | None = None,
    latest_timestamp: str | None = None,
    retries: int | None = None,
    retry_interval: int | None = None,
) -> Request:
    """GetLog (2.0.1, and the 1.6 security extension): upload the ``log_type`` log of the
    window to ``remote_location``. ``values``: ``request_id`` (which the station's
    LogStatusNotifications repeat) and ``file_name``; ``accepted`` also for
    ``AcceptedCanceled`` (the upload going on was cancelled for this one)."""
    log = present(
        remoteLocation=remote_location,
        oldestTimestamp=_time("oldest_timestamp", oldest_timestamp),
        latestTimestamp=_time("latest_timestamp", latest_timestamp),
    )
    payload = present(
        log=log,
        logType=log_type,
        requestId=request_id,
        retries=retries,
        retryInterval=retry_interval,
    )

    def read(response: dict[str, Any]) -> UseCaseResult:
        values = {"request_id": request_id, "file_name": response.get("filename")}
        status = str(response.get("status", ""))
        accepted = frozenset({"Accepted", "AcceptedCanceled"})
        return _result(protocol, "GetLog", response, status, values, accepted)

    return Request(protocol, "GetLog", payload, read)


def get_diagnostics(
    protocol: str,
    request_id: int,
    location: str,
    start_time: str | None = None,
    stop_time: str | None = None,
    retries: int | None = None,
    retry_interval: int | None = None,
) -> Request:
    """1.6 GetDiagnostics (its answer names the file, ``values.file_name``; without one the
    station has nothing to upload: status ``NoDiagnostics``); 2.0.1 GetLog of the
    ``DiagnosticsLog``."""
    if protocol != OCPP16:
        return get_log(
            protocol,
            request_id,
            "DiagnosticsLog",
            location,
            start_time,
            stop_time,
            retries,
            retry_interval,
        )
    payload = present(
        location=location,
        retries=retries,
        retryInterval=retry_interval,
        startTime=_time("start_time", start_time),
        stopTime=_time("stop_time", stop_time),
    )

    def read(response: dict[str, Any]) -> UseCaseResult:
        file_name = response.get("fileName")
        status = "Accepted" if file_name else "NoDiagnostics"
        return _result(protocol, "GetDiagnostics", response, status, {"file_name": file_name})

    return Request(protocol, "GetDiagnostics", payload, read)


# -- monitoring (2.0.1 N02-N08) --------------------------------------------------------------


class MonitorSetting(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One monitor to set: on the variable ``key`` names (``Component.Variable`` syntax, as
    everywhere), of ``type``, at ``value`` (a threshold, a delta, or the interval in seconds
    of a periodic monitor), firing events of ``severity`` (0 danger ... 9 debug); ``id``
    replaces the station's monitor of that id; ``transaction``: only while one runs."""

    key: str
    type: MonitorType
    value: float
    severity: Severity
    id: int | None = None
    transaction: bool = False


def set_variable_monitoring(protocol: str, monitors: list[MonitorSetting]) -> Request:
    """2.0.1 SetVariableMonitoring. ``values.monitors``: per monitor asked for, in order, its
    ``key``, ``type``, ``severity``, the station's ``status`` and the ``id`` it gave it;
    ``status``: ``Accepted`` when every one was, else the first other status."""
    only_201(protocol, "SetVariableMonitoring")
    data = [
        present(
            id=monitor.id,
            transaction=monitor.transaction or None,
            value=monitor.value,
            type=monitor.type,
            severity=monitor.severity,
            **_variable(monitor.key),
        )
        for monitor in monitors
    ]

    def read(response: dict[str, Any]) -> UseCaseResult:
        results = match_monitoring_results(data, response.get("setMonitoringResult", []))
        values = [
            {
                "key": monitor.key,
                "type": monitor.type,
                "severity": monitor.severity,
                "status": None if found is None else found.get("status"),
                "id": None if found is None else found.get("id"),
            }
            for monitor, (_, found) in zip(monitors, results, strict=True)
        ]
        refused = [str(value["status"]) for value in values if value["status"] != "Accepted"]
        status = refused[0] if refused else "Accepted"
        return _result(protocol, "SetVariableMonitoring", response, status, {"monitors": values})

    return Request(protocol, "SetVariableMonitoring", {"setMonitoringData": data}, read)


def clear_variable_monitoring(protocol: str, ids: list[int]) -> Request:
    """2.0.1 ClearVariableMonitoring of the monitors ``ids``. ``values``: each id's status
    (``Accepted``, ``Rejected``, ``NotFound``); ``status``: ``Accepted`` when every one was,
    else the first other status."""
    only_201(protocol, "ClearVariableMonitoring")

    def read(response: dict[str, Any]) -> UseCaseResult:
        values = {
            str(item.get("id")): item.get("status")
            for item in response.get("clearMonitoringResult", [])
        }
        refused = [str(values.get(str(i))) for i in ids if values.get(str(i)) != "Accepted"]
        status = refused[0] if refused else "Accepted"
        return _result(protocol, "ClearVariableMonitoring", response, status, values)

    return Request(protocol, "ClearVariableMonitoring", {"id": list(ids)}, read)


def set_monitoring_base(protocol: str, base: str) -> Request:
    """2.0.1 SetMonitoringBase: ``All`` (every preconfigured monitor on), ``FactoryDefault``
    (the default monitors; custom ones cleared), ``HardWiredOnly`` (custom ones cleared,
    preconfigured ones off)."""
    only_201(protocol, "SetMonitoringBase")
    return Request(protocol, "SetMonitoringBase", {"monitoringBase": base})


def set_monitoring_level(protocol: str, severity: int) -> Request:
    """2.0.1 SetMonitoringLevel: the station reports events of ``severity`` and more severe
    (lower numbers) only."""
    only_201(protocol, "SetMonitoringLevel")
    return Request(protocol, "SetMonitoringLevel", {"severity": severity})


def _monitoring_report(request_id: int) -> ReportProbe:
    """The probe of monitoring report ``request_id``: complete once every
    NotifyMonitoringReport part is folded; ``values``: each reported monitor by id."""

    def probe(views: Views, station: str) -> ReportProgress:
        state, report = views.monitors.get(station), views.monitors.report(station, request_id)
        if state is None or report is None:
            return ReportProgress(False, {})
        values = {
            str(monitor_id): monitor_json(state.monitors[monitor_id])
            for monitor_id in report.monitor_ids
            if monitor_id in state.monitors
        }
        return ReportProgress(report.complete, values)

    return probe


def get_monitoring_report(
    protocol: str,
    request_id: int,
    criteria: list[MonitoringCriterion] | None = None,
    keys: list[str] | None = None,
) -> Request:
    """2.0.1 GetMonitoringReport of the monitors of ``criteria`` kinds on the variables
    ``keys`` name (every monitor without either); the NotifyMonitoringReport parts are
    awaited and ``values`` map each reported monitor's id to it."""
    only_201(protocol, "GetMonitoringReport")
    component_variable = None if keys is None else [_variable(key) for key in keys]
    payload = present(
        requestId=request_id, monitoringCriteria=criteria, componentVariable=component_variable
    )
    return Request(protocol, "GetMonitoringReport", payload, report=_monitoring_report(request_id))


# -- customer information (2.0.1 N09, N10) ---------------------------------------------------


class CustomerCertificate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A customer's certificate by its OCPP hash data."""

    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    hash_algorithm: str = "SHA256"


def _customer_report(request_id: int) -> ReportProbe:
    """The probe of customer report ``request_id``: complete once every
    NotifyCustomerInformation part is folded; ``values``: the assembled ``data``."""

    def probe(views: Views, station: str) -> ReportProgress:
        request = views.customer_information.request(station, request_id)
        if request is None:
            return ReportProgress(False, {})
        return ReportProgress(request.complete, {"request_id": request_id, "data": request.text})

    return probe


def customer_information(
    protocol: str,
    request_id: int,
    report: bool,
    clear: bool,
    id_token: str | None = None,
    id_token_type: str = "Central",
    customer_identifier: str | None = None,
    customer_certificate: CustomerCertificate | None = None,
) -> Request:
    """2.0.1 CustomerInformation about the customer ``id_token``, ``customer_identifier`` or
    ``customer_certificate`` names: a report (its NotifyCustomerInformation parts awaited,
    ``values.data`` the assembled text) and/or clearing the station's data of them."""
    only_201(protocol, "CustomerInformation")
    certificate = None
    if customer_certificate is not None:
        certificate = {
            "hashAlgorithm": customer_certificate.hash_algorithm,
            "issuerNameHash": customer_certificate.issuer_name_hash,
            "issuerKeyHash": customer_certificate.issuer_key_hash,
            "serialNumber": customer_certificate.serial_number,
        }
    payload = present(
        requestId=request_id,
        report=report,
        clear=clear,
        idToken=None if id_token is None else {"idToken": id_token, "type": id_token_type},
        customerIdentifier=customer_identifier,
        customerCertificate=certificate,
    )

    def read(response: dict[str, Any]) -> UseCaseResult:
        status = str(response.get("status", ""))
        return _result(
            protocol, "CustomerInformation", response, status, {"request_id": request_id}
        )

    probe = _customer_report(request_id) if report else None
    return Request(protocol, "CustomerInformation", payload, read, probe)


# -- the arguments and the table ---------------------------------------------------------------


class GetDiagnosticsArgs(UseCaseArgs, tag="get_diagnostics"):
    """Have the station upload its diagnostics to `location` (a URL; the CSMS hosts no
    files), of `start_time` to `stop_time` (RFC 3339): 1.6 GetDiagnostics (`values.file_name`;
    status `NoDiagnostics` when it has none), 2.0.1 GetLog of the `DiagnosticsLog`
    (`values.request_id`). The upload's status notifications are folded in
    `/api/stations/{id}/logs`."""

    location: str
    start_time: str | None = None
    stop_time: str | None = None
    retries: Count | None = None
    retry_interval: Count | None = None


class GetLogArgs(UseCaseArgs, tag="get_log"):
    """Have the station upload its `DiagnosticsLog` or `SecurityLog` of `oldest_timestamp` to
    `latest_timestamp` (RFC 3339) to `remote_location` (GetLog: 2.0.1, 1.6 security
    extension); `values.request_id` names the upload in `/api/stations/{id}/logs`,
    `values.file_name` the file."""

    remote_location: str
    log_type: LogType = "DiagnosticsLog"
    oldest_timestamp: str | None = None
    latest_timestamp: str | None = None
    retries: Count | None = None
    retry_interval: Count | None = None


class SetVariableMonitoringArgs(UseCaseArgs, tag="set_variable_monitoring"):
    """2.0.1: set `monitors` (each `key`, `type`, `value`, `severity`, optional `id` to
    replace one, `transaction`); `values.monitors` give each one's status and the id the
    station gave it. Folded in `/api/stations/{id}/monitors`."""

    monitors: Annotated[list[MonitorSetting], msgspec.Meta(min_length=1)]


class ClearVariableMonitoringArgs(UseCaseArgs, tag="clear_variable_monitoring"):
    """2.0.1: clear the monitors `ids`; `values` hold each id's status."""

    ids: Annotated[list[int], msgspec.Meta(min_length=1)]


class SetMonitoringBaseArgs(UseCaseArgs, tag="set_monitoring_base"):
    """2.0.1: the monitors the station runs: `All`, `FactoryDefault`, `HardWiredOnly` (the
    last two clear the custom ones)."""

    base: MonitoringBase


class SetMonitoringLevelArgs(UseCaseArgs, tag="set_monitoring_level"):
    """2.0.1: report only events of `severity` (0-9) and more severe."""

    severity: Severity


class GetMonitoringReportArgs(UseCaseArgs, tag="get_monitoring_report"):
    """2.0.1: ask for the monitors of `criteria` (`ThresholdMonitoring`, `DeltaMonitoring`,
    `PeriodicMonitoring`) on the variables `keys` name (all without either) and wait for
    every NotifyMonitoringReport part; `values` map each monitor id to it."""

    criteria: list[MonitoringCriterion] | None = None
    keys: list[str] | None = None


class CustomerInformationArgs(UseCaseArgs, tag="customer_information"):
    """2.0.1: `report` what the station holds of a customer (awaited: `values.data`) and/or
    `clear` it; the customer is named by exactly one of `id_token` (of `id_token_type`),
    `customer_identifier`, `customer_certificate`. Folded, with who asked, in
    `/api/stations/{id}/customer-information`."""

    report: bool = True
    clear: bool = False
    id_token: str | None = None
    id_token_type: str = "Central"
    customer_identifier: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    customer_certificate: CustomerCertificate | None = None

    def __post_init__(self) -> None:
        named = [self.id_token, self.customer_identifier, self.customer_certificate]
        if sum(value is not None for value in named) != 1:
            raise ValueError(
                "name the customer by exactly one of id_token, customer_identifier,"
                " customer_certificate"
            )
        if not (self.report or self.clear):
            raise ValueError("ask for a report, a clear, or both")


USE_CASES: tuple[UseCase[Any], ...] = (
    UseCase[GetDiagnosticsArgs](
        "get_diagnostics",
        GetDiagnosticsArgs,
        lambda protocol, a, request_id: get_diagnostics(
            protocol,
            request_id,
            a.location,
            a.start_time,
            a.stop_time,
            a.retries,
            a.retry_interval,
        ),
    ),
    UseCase[GetLogArgs](
        "get_log",
        GetLogArgs,
        lambda protocol, a, request_id: get_log(
            protocol,
            request_id,
            a.log_type,
            a.remote_location,
            a.oldest_timestamp,
            a.latest_timestamp,
            a.retries,
            a.retry_interval,
        ),
    ),
    UseCase[SetVariableMonitoringArgs](
        "set_variable_monitoring",
        SetVariableMonitoringArgs,
        lambda protocol, a, _: set_variable_monitoring(protocol, a.monitors),
    ),
    UseCase[ClearVariableMonitoringArgs](
        "clear_variable_monitoring",
        ClearVariableMonitoringArgs,
        lambda protocol, a, _: clear_variable_monitoring(protocol, a.ids),
    ),
    UseCase[SetMonitoringBaseArgs](
        "set_monitoring_base",
        SetMonitoringBaseArgs,
        lambda protocol, a, _: set_monitoring_base(protocol, a.base),
    ),
    UseCase[SetMonitoringLevelArgs](
        "set_monitoring_level",
        SetMonitoringLevelArgs,
        lambda protocol, a, _: set_monitoring_level(protocol, a.severity),
    ),
    UseCase[GetMonitoringReportArgs](
        "get_monitoring_report",
        GetMonitoringReportArgs,
        lambda protocol, a, request_id: get_monitoring_report(
            protocol, request_id, a.criteria, a.keys
        ),
    ),
    UseCase[CustomerInformationArgs](
        "customer_information",
        CustomerInformationArgs,
        lambda protocol, a, request_id: customer_information(
            protocol,
            request_id,
            a.report,
            a.clear,
            a.id_token,
            a.id_token_type,
            a.customer_identifier,
            a.customer_certificate,
        ),
    ),
)
"""The block's use cases, gathered into :data:`chargeledger.core.usecases.USE_CASES`."""
