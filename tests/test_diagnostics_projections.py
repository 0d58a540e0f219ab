"""The logs, monitors and customer-information projections on generated logs: uploads and
their notifications, monitors set, cleared and reported in parts (duplicated, missing and
out of order), events, recorded customer requests and their report parts, CALLERRORs,
unanswered CALLs and reconnects. A live fold queried between events equals a replay; parts
are complete exactly when all arrived; a report is its parts in order; who asked is a
matching recorded request."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.core.events import CommandRequested
from chargeledger.projections import Views
from chargeledger.projections.customer_information import customer_information_json
from chargeledger.projections.logs import logs_json
from chargeledger.projections.monitors import monitors_json
from chargeledger.projections.parts import Parts
from tests.test_projections import Log

STATIONS = ("CP1", "CP2", "CP3")
"""Two 2.0.1 stations and a 1.6 one."""
PROTOCOLS = {"CP1": "ocpp2.0.1", "CP2": "ocpp2.0.1", "CP3": "ocpp1.6"}
KEYS = ({"name": "EVSE", "evse": {"id": 1}}, {"name": "ChargingStation"})

answer = st.sampled_from(["result", "result", "result", "error", "none"])
request_id = st.integers(1, 3)
OPERATIONS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "reopen": st.tuples(),
    "get_log": st.tuples(
        request_id, st.sampled_from(["Accepted", "Rejected", "AcceptedCanceled"]), answer
    ),
    "get_diagnostics": st.tuples(st.booleans(), answer),
    "log_status": st.tuples(
        st.one_of(st.none(), request_id),
        st.sampled_from(["Uploading", "Uploaded", "UploadFailure", "Idle", "AcceptedCanceled"]),
    ),
    "diagnostics_status": st.tuples(
        st.sampled_from(["Uploading", "Uploaded", "UploadFailed", "Idle"])
    ),
    "set_monitor": st.tuples(
        st.integers(0, 1), st.one_of(st.none(), st.integers(1, 3)), st.booleans(), answer
    ),
    "clear_monitor": st.tuples(
        st.integers(1, 4), st.sampled_from(["Accepted", "NotFound", "Rejected"])
    ),
    "monitor_request": st.tuples(
        request_id, st.booleans(), st.sampled_from(["Accepted", "EmptyResultSet"])
    ),
    "monitor_part": st.tuples(request_id, st.integers(0, 2), st.booleans(), st.integers(1, 4)),
    "base": st.tuples(st.sampled_from(["All", "FactoryDefault", "HardWiredOnly"]), st.booleans()),
    "level": st.tuples(st.integers(0, 9), st.booleans()),
    "event": st.tuples(st.integers(1, 4)),
    "command": st.tuples(
        st.sampled_from(["alice", "bob"]), st.sampled_from(["A", "B"]), st.booleans()
    ),
    "customer_call": st.tuples(request_id, st.sampled_from(["A", "B"]), st.booleans(), answer),
    "customer_part": st.tuples(
        request_id, st.integers(0, 2), st.booleans(), st.sampled_from(["x", "yz", ""])
    ),
}
operation = st.sampled_from(sorted(OPERATIONS)).flatmap(
    lambda kind: st.tuples(st.just(kind), st.integers(0, 2), OPERATIONS[kind]).map(
        lambda drawn: (drawn[0], drawn[1], *drawn[2])
    )
)


class Generated:
    """A log built from generated operations, and what the invariants need to know of it."""

    def __init__(self, operations: list[tuple[Any, ...]]) -> None:
        self.log = Log()
        self.parts: dict[tuple[str, int], dict[int, str]] = {}
        """The data of each customer report part first received, by (station, requestId)."""
        self.commands: list[tuple[int, CommandRequested]] = []
        self.next_monitor = 100
        for station in STATIONS:
            self.log.open(station, PROTOCOLS[station])
        for kind, index, *arguments in operations:
            getattr(self, f"_{kind}")(STATIONS[index], *arguments)

    def _call(
        self, station: str, action: str, payload: Any, result: Any, answer: str, by: str = "out"
    ) -> int | None:
        if answer == "error":
            self.log.call(station, action, payload, error=True, by=by)  # type: ignore[arg-type]
            return None
        positions = self.log.call(
            station,
            action,
            payload,
            result if answer == "result" else None,
            by=by,  # type: ignore[arg-type]
        )
        return positions[1]

    def _reopen(self, station: str) -> None:
        self.log.close(station)
        self.log.open(station, PROTOCOLS[station])

    def _get_log(self, station: str, rid: int, status: str, answer: str) -> None:
        payload = {"log": {"remoteLocation": "u"}, "logType": "SecurityLog", "requestId": rid}
        self._call(station, "GetLog", payload, {"status": status, "filename": "f"}, answer)

    def _get_diagnostics(self, station: str, file: bool, answer: str) -> None:
        self._call(
            station, "GetDiagnostics", {"location": "u"}, {"fileName": "f"} if file else {}, answer
        )

    def _log_status(self, station: str, rid: int | None, status: str) -> None:
        payload = {"status": status} if rid is None else {"status": status, "requestId": rid}
        self._call(station, "LogStatusNotification", payload, {}, "result", by="in")

    def _diagnostics_status(self, station: str, status: str) -> None:
        self._call(
            station, "DiagnosticsStatusNotification", {"status": status}, {}, "result", by="in"
        )

    def _set_monitor(
        self, station: str, key: int, monitor_id: int | None, ok: bool, answer: str
    ) -> None:
        data = {
            "value": 5,
            "type": "Delta",
            "severity": 3,
            "component": KEYS[key],
            "variable": {"name": "V"},
        }
        if monitor_id is not None:
            data["id"] = monitor_id
        given_id = monitor_id or self.next_monitor
        self.next_monitor += monitor_id is None
        result = {key: value for key, value in data.items() if key not in ("value", "id")}
        result |= {"status": "Accepted", "id": given_id} if ok else {"status": "Rejected"}
        self._call(
            station,
            "SetVariableMonitoring",
            {"setMonitoringData": [data]},
            {"setMonitoringResult": [result]},
            answer,
        )

    def _clear_monitor(self, station: str, monitor_id: int, status: str) -> None:
        result = {"clearMonitoringResult": [{"id": monitor_id, "status": status}]}
        self._call(station, "ClearVariableMonitoring", {"id": [monitor_id]}, result, "result")

    def _monitor_request(self, station: str, rid: int, everything: bool, status: str) -> None:
        payload: dict[str, Any] = {"requestId": rid}
        if not everything:
            payload["monitoringCriteria"] = ["DeltaMonitoring"]
        self._call(station, "GetMonitoringReport", payload, {"status": status}, "result")

    def _monitor_part(
        self, station: str, rid: int, seq_no: int, tbc: bool, monitor_id: int
    ) -> None:
        monitor = {
            "id": monitor_id,
            "transaction": False,
            "value": 1,
            "type": "Periodic",
            "severity": 7,
        }
        entry = {
            "component": KEYS[monitor_id % 2],
            "variable": {"name": "V"},
            "variableMonitoring": [monitor],
        }
        payload = {
            "requestId": rid,
            "seqNo": seq_no,
            "generatedAt": "g",
            "tbc": tbc,
            "monitor": [entry],
        }
        self._call(station, "NotifyMonitoringReport", payload, {}, "result", by="in")

    def _base(self, station: str, base: str, ok: bool) -> None:
        result = {"status": "Accepted" if ok else "Rejected"}
        self._call(station, "SetMonitoringBase", {"monitoringBase": base}, result, "result")

    def _level(self, station: str, severity: int, ok: bool) -> None:
        result = {"status": "Accepted" if ok else "Rejected"}
        self._call(station, "SetMonitoringLevel", {"severity": severity}, result, "result")

    def _event(self, station: str, monitor_id: int) -> None:
        data = {
            "eventId": monitor_id,
            "timestamp": "t",
            "trigger": "Delta",
            "actualValue": "7",
            "component": KEYS[monitor_id % 2],
            "variable": {"name": "V"},
            "eventNotificationType": "CustomMonitor",
            "variableMonitoringId": monitor_id,
        }
        payload = {"generatedAt": "g", "seqNo": 0, "eventData": [data]}
        self._call(station, "NotifyEvent", payload, {}, "result", by="in")

    def _command(self, station: str, who: str, token: str, clear: bool) -> None:
        event = CommandRequested(
            request_id=f"r{len(self.log.records)}",
            station=station,
            at=self.log.at,
            key=who,
            role="operator",
            mode="use_case",
            command="customer_information",
            payload={"id_token": token, "report": not clear, "clear": clear},
        )
        self.commands.append((self.log.add(event), event))

    def _customer_call(self, station: str, rid: int, token: str, clear: bool, answer: str) -> None:
        payload = {
            "requestId": rid,
            "report": not clear,
            "clear": clear,
            "idToken": {"idToken": token, "type": "Central"},
        }
        self._call(station, "CustomerInformation", payload, {"status": "Accepted"}, answer)

    def _customer_part(self, station: str, rid: int, seq_no: int, tbc: bool, data: str) -> None:
        payload = {"data": data, "seqNo": seq_no, "generatedAt": "g", "requestId": rid, "tbc": tbc}
        answered = self._call(station, "NotifyCustomerInformation", payload, {}, "result", by="in")
        if answered and PROTOCOLS[station] != "ocpp1.6":
            self.parts.setdefault((station, rid), {}).setdefault(seq_no, data)


def shown(views: Views) -> Any:
    return (
        [logs_json(state) for state in views.logs.all()],
        [monitors_json(state) for state in views.monitors.all()],
        [customer_information_json(state) for state in views.customer_information.all()],
        views.logs.all(),
        views.monitors.all(),
        views.customer_information.all(),
    )


def _complete(parts: Parts) -> bool:
    last = parts.last_seq_no
    return last is not None and parts.seq_nos == list(range(last + 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, min_size=5, max_size=60))
def test_live_fold_equals_replay(operations: list[tuple[Any, ...]]) -> None:
    generated = Generated(operations)
    records = generated.log.records
    live = Views()
    for count, recorded in enumerate(records, 1):
        live.apply(recorded)
        for station in STATIONS:  # every read the API does; none may change a later fold
            live.logs.get(station)
            live.monitors.report(station, 1)
            live.customer_information.request(station, 1)
        if count % 13 == 0:
            assert shown(live) == shown(Views.replay(records[:count]))
    replayed = Views.replay(records)
    assert shown(live) == shown(replayed)

    for state in replayed.monitors.all():
        assert state.station != "CP3"  # 2.0.1 only
        for report in state.reports.values():
            assert report.complete == _complete(report)
    for customers in replayed.customer_information.all():
        for request in customers.requests.values():
            assert request.complete == _complete(request)
            held = generated.parts.get((customers.station, request.request_id), {})
            assert request.text == "".join(text for _, text in sorted(held.items()))
            asked = request.asked_by
            if asked is None:
                continue
            (command,) = [e for p, e in generated.commands if p == asked.position]
            assert command.station == customers.station and asked.key == command.key
            assert request.position is not None and asked.position < request.position
            assert command.payload["id_token"] == (request.id_token or {}).get("idToken")
            assert command.payload["clear"] == request.clear
    for logs in replayed.logs.all():
        for upload in logs.requests:
            positions = [status.position for status in upload.uploads]
            assert positions == sorted(set(positions))  # each notification folded once
