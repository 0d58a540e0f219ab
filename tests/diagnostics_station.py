"""What the test stations do with diagnostics, logs, monitors and customer information: mixins
for the ``ocpp`` package's charge points of both versions (put them first among the bases).

Uploads: each accepted upload is reported ``Uploading`` then ``Uploaded``, or
``UploadFailed`` / ``UploadFailure`` when the location contains ``fail``. Monitors: the
station holds one hard-wired monitor (id 1) and gives new ones ids from 100;
an unknown component is refused. Its monitoring report and its customer reports come in two
parts (``tbc``).
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

__all__ = ["GENERATED_AT", "Diagnostics16", "Diagnostics201"]

GENERATED_AT = "2026-11-21T10:00:00Z"


def _failing(location: str) -> bool:
    return "fail" in location


class Diagnostics16:
    """1.6: GetDiagnostics (DiagnosticsStatusNotification) and the security extension's
    GetLog (LogStatusNotification)."""

    call: Any
    uploads: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploads = []
        """The answers to the status notifications it sent."""

    @on(Action16.get_diagnostics)
    def on_get_diagnostics(self, location: str, **_: Any) -> Any:
        return result16.GetDiagnostics(file_name="diagnostics-CP.zip")

    @after(Action16.get_diagnostics)
    async def upload_diagnostics(self, location: str, **_: Any) -> None:
        for status in ("Uploading", "UploadFailed" if _failing(location) else "Uploaded"):
            self.uploads.append(await self.call(call16.DiagnosticsStatusNotification(status)))

    @on(Action16.get_log)
    def on_get_log(self, log: dict[str, Any], log_type: str, request_id: int, **_: Any) -> Any:
        return result16.GetLog(status="Accepted", filename=f"{log_type}-{request_id}.log")

    @after(Action16.get_log)
    async def upload_log(
        self, log: dict[str, Any], log_type: str, request_id: int, **_: Any
    ) -> None:
        failed = _failing(log["remote_location"])
        for status in ("Uploading", "UploadFailure" if failed else "Uploaded"):
            notification = call16.LogStatusNotification(status=status, request_id=request_id)
            self.uploads.append(await self.call(notification))


class Diagnostics201:
    """2.0.1: GetLog, the monitoring messages and CustomerInformation."""

    call: Any
    uploads: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploads = []
        """The answers to the notifications and report parts it sent."""
        self.monitors: dict[int, dict[str, Any]] = {
            1: {
                "component": {"name": "ChargingStation"},
                "variable": {"name": "Problem"},
                "type": "Delta",
                "value": 1,
                "severity": 0,
            }
        }
        self.next_monitor = 100
        self.uploading: int | None = None
        self.customers: dict[str, str] = {"TAG-C": "name=Ada Lovelace;card=TAG-C;sessions=12"}

    @on(Action201.get_log)
    def on_get_log(self, log: dict[str, Any], log_type: str, request_id: int, **_: Any) -> Any:
        status = "AcceptedCanceled" if self.uploading is not None else "Accepted"
        return result201.GetLog(status=status, filename=f"{log_type}-{request_id}.log")

    @after(Action201.get_log)
    async def upload_log(
        self, log: dict[str, Any], log_type: str, request_id: int, **_: Any
    ) -> None:
        location = log["remote_location"]
        if "hold" in location:  # stays Uploading until another GetLog cancels it
            self.uploading = request_id
            await self._log_status("Uploading", request_id)
            return
        if self.uploading is not None:
            await self._log_status("AcceptedCanceled", self.uploading)
            self.uploading = None
        await self._log_status("Uploading", request_id)
        await self._log_status("UploadFailure" if _failing(location) else "Uploaded", request_id)

    async def _log_status(self, status: str, request_id: int) -> None:
        notification = call201.LogStatusNotification(status=status, request_id=request_id)
        self.uploads.append(await self.call(notification))

    @on(Action201.set_variable_monitoring)
    def on_set_variable_monitoring(self, set_monitoring_data: list[dict[str, Any]]) -> Any:
        results = []
        for data in set_monitoring_data:
            result = {
                "type": data["type"],
                "severity": data["severity"],
                "component": data["component"],
                "variable": data["variable"],
            }
            if data["component"]["name"] == "Nope":
                results.append({**result, "status": "UnknownComponent"})
                continue
            monitor_id = data.get("id") or self.next_monitor
            self.next_monitor += monitor_id == self.next_monitor
            self.monitors[monitor_id] = {**result, "value": data["value"]}
            results.append({**result, "status": "Accepted", "id": monitor_id})
        return result201.SetVariableMonitoring(set_monitoring_result=results)

    @on(Action201.clear_variable_monitoring)
    def on_clear_variable_monitoring(self, id: list[int]) -> Any:
        results = [
            {"id": i, "status": "Accepted" if self.monitors.pop(i, None) else "NotFound"}
            for i in id
        ]
        return result201.ClearVariableMonitoring(clear_monitoring_result=results)

    @on(Action201.set_monitoring_base)
    def on_set_monitoring_base(self, monitoring_base: str) -> Any:
        return result201.SetMonitoringBase(status="Accepted")

    @on(Action201.set_monitoring_level)
    def on_set_monitoring_level(self, severity: int) -> Any:
        return result201.SetMonitoringLevel(status="Accepted")

    @on(Action201.get_monitoring_report)
    def on_get_monitoring_report(self, request_id: int, **_: Any) -> Any:
        return result201.GetMonitoringReport(
            status="Accepted" if self.monitors else "EmptyResultSet"
        )

    @after(Action201.get_monitoring_report)
    async def send_monitoring_report(self, request_id: int, **_: Any) -> None:
        """Every monitor, in two parts: the hard-wired one, then the others."""
        entries = [
            {
                "component": monitor["component"],
                "variable": monitor["variable"],
                "variableMonitoring": [
                    {
                        "id": monitor_id,
                        "transaction": False,
                        "value": monitor["value"],
                        "type": monitor["type"],
                        "severity": monitor["severity"],
                    }
                ],
            }
            for monitor_id, monitor in sorted(self.monitors.items())
        ]
        if not entries:
            return
        parts = [entries[:1], entries[1:]] if len(entries) > 1 else [entries]
        for seq_no, part in enumerate(parts):
            report = call201.NotifyMonitoringReport(
                request_id=request_id,
                seq_no=seq_no,
                generated_at=GENERATED_AT,
                monitor=part,
                tbc=seq_no < len(parts) - 1,
            )
            self.uploads.append(await self.call(report))

    @on(Action201.customer_information)
    def on_customer_information(self, request_id: int, report: bool, clear: bool, **_: Any) -> Any:
        return result201.CustomerInformation(status="Accepted")

    @after(Action201.customer_information)
    async def send_customer_information(
        self, request_id: int, report: bool, clear: bool, **who: Any
    ) -> None:
        token = (who.get("id_token") or {}).get("id_token") or who.get("customer_identifier")
        held = self.customers.get(str(token), "")
        if clear:
            self.customers.pop(str(token), None)
        if not report:
            return
        middle = len(held) // 2
        for seq_no, data in enumerate((held[:middle], held[middle:])):
            part = call201.NotifyCustomerInformation(
                data=data,
                seq_no=seq_no,
                generated_at=GENERATED_AT,
                request_id=request_id,
                tbc=seq_no == 0,
            )
            self.uploads.append(await self.call(part))

    async def fire(self, monitor_id: int, actual_value: str, event_id: int = 1) -> Any:
        """A NotifyEvent of the monitor ``monitor_id``."""
        monitor = self.monitors[monitor_id]
        event = {
            "eventId": event_id,
            "timestamp": GENERATED_AT,
            "trigger": "Alerting",
            "actualValue": actual_value,
            "eventNotificationType": "CustomMonitor",
            "variableMonitoringId": monitor_id,
            "component": monitor["component"],
            "variable": monitor["variable"],
        }
        return await self.call(
            call201.NotifyEvent(generated_at=GENERATED_AT, seq_no=0, event_data=[event])
        )
