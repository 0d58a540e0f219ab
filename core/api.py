"""The Python API of a running CSMS: use cases and message mode towards stations, and reads.

Two modes, as in the best CSMS stacks:

* **Use-case mode**: the same call whatever the station's protocol version
  (``remote_start``, ``remote_stop``, ``reset``, ``change_availability``,
  ``unlock_connector``, ``read_configuration``, ``change_configuration``,
  ``trigger_message``, ``clear_cache``, ``data_transfer``). Each returns a
  :class:`UseCaseResult`; :mod:`chargeledger.core.usecases` builds the version's request
  (the mapping is tabled in docs/ocpp201.md). 2.0.1 only: ``get_base_report``,
  ``get_report``, ``set_variables``, ``get_transaction_status``.
* **Message mode**: :meth:`CentralSystem.call`, any action of the station's version with a raw
  payload, schema-checked, returning the station's CALLRESULT payload.

Every method awaits the station's answer. They raise, from :mod:`chargeledger.core.errors`:

* ``OutboundValidationError``: the payload violates the official schema; nothing was sent.
* ``StationOffline``: the station is not connected to this node, or left before answering.
* ``CallError``: the station answered with a CALLERROR (``code``, ``description``).
* ``CallTimeout``: no answer within ``Settings.call_timeout``; the timeout is recorded and a
  late answer is recorded and ignored.
* ``StationBusy``: the station's queue of CALLs is full; nothing was sent: try again later.
* ``UnsupportedUseCase``: the use case has no equivalent in the station's version.
"""

from __future__ import annotations

from typing import Any

import msgspec
import trio

from chargeledger.core import usecases
from chargeledger.core.errors import StationOffline
from chargeledger.core.gateway import Gateway
from chargeledger.core.store import Store
from chargeledger.core.usecases import ResetKind, UseCaseResult
from chargeledger.projections import Views

__all__ = ["CentralSystem", "UseCaseResult"]

REPORT_POLL_SECONDS = 0.02
"""How often a report request looks whether the station's report is complete."""


class CentralSystem:
    """A handle on a running server (what :func:`~chargeledger.core.server.run_server`
    hands to ``task_status``)."""

    def __init__(self, gateway: Gateway, store: Store, port: int) -> None:
        self.gateway = gateway
        self.store = store
        self.port = port
        self.api_port: int | None = None
        """The HTTP API's bound port; ``None`` when the API is not served."""
        self._last_request_id = 0

    @property
    def views(self) -> Views:
        """The live projections (read-only)."""
        return self.gateway.views

    @property
    def connected(self) -> list[str]:
        """Stations connected to this node."""
        return sorted(self.gateway.sessions)

    def protocol(self, station: str) -> str:
        """The protocol version of the station's current connection; ``StationOffline`` if none."""
        session = self.gateway.sessions.get(station)
        if session is None:
            raise StationOffline(station=station, action=None)
        return session.protocol

    async def call(self, station: str, action: str, payload: Any) -> dict[str, Any]:
        """Message mode: send ``action`` with ``payload`` and return the station's answer."""
        return await self.gateway.call(station, action, payload)

    async def _use(self, station: str, request: usecases.Request) -> UseCaseResult:
        response = await self.call(station, request.action, request.payload)
        return request.result(response)

    def _request_id(self) -> int:
        """A fresh 2.0.1 ``requestId`` / ``remoteStartId``: above every id this process handed
        out and above the log position folded last, so ids do not repeat within a process and
        keep growing across restarts (every request sent is logged)."""
        self._last_request_id = max(self._last_request_id, self.views.position) + 1
        return self._last_request_id

    async def _report(self, station: str, request: usecases.Request) -> UseCaseResult:
        """Send a 2.0.1 report request and wait, at most ``call_timeout``, for every part of
        the report. ``values``: each variable's ``Actual`` value in the station's device model
        then; status ``ReportIncomplete`` (not accepted) when parts are still missing."""
        result = await self._use(station, request)
        if not result.accepted:
            return result
        request_id = request.payload["requestId"]
        with trio.move_on_after(self.gateway.settings.call_timeout):
            while not self._report_complete(station, request_id):
                await trio.sleep(REPORT_POLL_SECONDS)
        model = self.views.device_model.get(station)
        values = {} if model is None else model.values()
        if self._report_complete(station, request_id):
            return msgspec.structs.replace(result, values=values)
        return msgspec.structs.replace(
            result, status="ReportIncomplete", accepted=False, values=values
        )

    def _report_complete(self, station: str, request_id: int) -> bool:
        model = self.views.device_model.get(station)
        report = None if model is None else model.reports.get(request_id)
        return report is not None and report.complete

    # -- use cases (version-neutral) ----------------------------------------------------------

    async def remote_start(
        self,
        station: str,
        id_token: str,
        *,
        evse_id: int | None = None,
        connector_id: int | None = None,
        charging_limit_w: float | None = None,
        id_token_type: str = "Central",
    ) -> UseCaseResult:
        """Start a session for ``id_token`` (1.6 RemoteStartTransaction; 2.0.1
        RequestStartTransaction with a fresh ``remoteStartId`` and an ``idToken`` of
        ``id_token_type``), limited to ``charging_limit_w`` watts by a TxProfile."""
        request = usecases.remote_start(
            self.protocol(station),
            id_token,
            evse_id,
            connector_id,
            charging_limit_w,
            request_id=self._request_id(),
            id_token_type=id_token_type,
        )
        return await self._use(station, request)

    async def remote_stop(self, station: str, transaction_id: int | str) -> UseCaseResult:
        """Stop the transaction (1.6 RemoteStopTransaction, 2.0.1 RequestStopTransaction)."""
        return await self._use(
            station, usecases.remote_stop(self.protocol(station), transaction_id)
        )

    async def reset(
        self, station: str, kind: ResetKind = "soft", *, evse_id: int | None = None
    ) -> UseCaseResult:
        """Reset the station (or, 2.0.1 only, one EVSE): ``soft`` / ``on_idle`` (1.6 Soft,
        2.0.1 OnIdle) or ``hard`` / ``immediate`` (1.6 Hard, 2.0.1 Immediate)."""
        return await self._use(station, usecases.reset(self.protocol(station), kind, evse_id))

    async def change_availability(
        self,
        station: str,
        operative: bool,
        *,
        evse_id: int | None = None,
        connector_id: int | None = None,
    ) -> UseCaseResult:
        """Make the station (no ids), an EVSE or a connector operative or inoperative."""
        request = usecases.change_availability(
            self.protocol(station), operative, evse_id, connector_id
        )
        return await self._use(station, request)

    async def unlock_connector(
        self, station: str, connector_id: int, *, evse_id: int | None = None
    ) -> UseCaseResult:
        """Unlock a connector's cable."""
        request = usecases.unlock_connector(self.protocol(station), connector_id, evse_id)
        return await self._use(station, request)

    async def read_configuration(
        self, station: str, keys: list[str] | None = None
    ) -> UseCaseResult:
        """Read configuration; ``UseCaseResult.values`` maps each key to its value (1.6
        GetConfiguration; 2.0.1 GetVariables, or without ``keys`` a ConfigurationInventory
        report, awaited, whose values are keyed by variable key)."""
        protocol = self.protocol(station)
        request = usecases.read_configuration(protocol, keys, request_id=self._request_id())
        if request.action == "GetBaseReport":
            return await self._report(station, request)
        return await self._use(station, request)

    async def change_configuration(self, station: str, key: str, value: str) -> UseCaseResult:
        """Set one configuration key (1.6 ChangeConfiguration, 2.0.1 SetVariables)."""
        request = usecases.change_configuration(self.protocol(station), key, value)
        return await self._use(station, request)

    async def trigger_message(
        self,
        station: str,
        message: str,
        *,
        evse_id: int | None = None,
        connector_id: int | None = None,
    ) -> UseCaseResult:
        """Ask the station to send ``message`` (e.g. ``StatusNotification``, ``Heartbeat``)."""
        request = usecases.trigger_message(self.protocol(station), message, evse_id, connector_id)
        return await self._use(station, request)

    async def clear_cache(self, station: str) -> UseCaseResult:
        """Clear the station's authorization cache."""
        return await self._use(station, usecases.clear_cache(self.protocol(station)))

    async def data_transfer(
        self,
        station: str,
        vendor_id: str,
        message_id: str | None = None,
        data: str | None = None,
    ) -> UseCaseResult:
        """Send a vendor-specific DataTransfer."""
        request = usecases.data_transfer(self.protocol(station), vendor_id, message_id, data)
        return await self._use(station, request)

    # -- 2.0.1 only -----------------------------------------------------------------------------

    async def get_base_report(
        self, station: str, report_base: str = "FullInventory"
    ) -> UseCaseResult:
        """Ask for a base report (``FullInventory``, ``ConfigurationInventory``,
        ``SummaryInventory``) and wait for all its parts (see ``views.device_model``)."""
        request_id = self._request_id()
        request = usecases.get_base_report(self.protocol(station), request_id, report_base)
        return await self._report(station, request)

    async def get_report(
        self, station: str, keys: list[str] | None = None, criteria: list[str] | None = None
    ) -> UseCaseResult:
        """Ask for a report of some variables and/or component criteria and wait for it."""
        request_id = self._request_id()
        request = usecases.get_report(self.protocol(station), request_id, keys, criteria)
        return await self._report(station, request)

    async def set_variables(self, station: str, values: dict[str, str]) -> UseCaseResult:
        """Set several variables in one SetVariables; ``values`` of the result hold each key's
        ``attributeStatus``."""
        return await self._use(station, usecases.set_variables(self.protocol(station), values))

    async def get_transaction_status(
        self, station: str, transaction_id: str | None = None
    ) -> UseCaseResult:
        """Whether the station still queues messages (of the transaction, when named)."""
        request = usecases.get_transaction_status(self.protocol(station), transaction_id)
        return await self._use(station, request)
