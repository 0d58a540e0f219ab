"""The Python API of a running CSMS: use cases and message mode towards stations, and reads.

Two modes, as in the best CSMS stacks:

* **Use-case mode**: the same call whatever the station's protocol version
  (``remote_start``, ``remote_stop``, ``reset``, ``change_availability``,
  ``unlock_connector``, ``read_configuration``, ``change_configuration``,
  ``trigger_message``, ``clear_cache``, ``data_transfer``). Each returns a
  :class:`UseCaseResult`; :mod:`chargeledger.core.usecases` builds the version's request.
* **Message mode**: :meth:`CentralSystem.call`, any action of the station's version with a raw
  payload, schema-checked, returning the station's CALLRESULT payload.

Every method awaits the station's answer. They raise, from :mod:`chargeledger.core.errors`:

* ``OutboundValidationError``: the payload violates the official schema; nothing was sent.
* ``StationOffline``: the station is not connected to this node, or left before answering.
* ``CallError``: the station answered with a CALLERROR (``code``, ``description``).
* ``CallTimeout``: no answer within ``Settings.call_timeout``; the timeout is recorded and a
  late answer is recorded and ignored.
* ``UnsupportedUseCase``: the use case has no equivalent in the station's version.
"""

from __future__ import annotations

from typing import Any

from chargeledger.core import usecases
from chargeledger.core.errors import StationOffline
from chargeledger.core.gateway import Gateway
from chargeledger.core.store import Store
from chargeledger.core.usecases import ResetKind, UseCaseResult
from chargeledger.projections import Views

__all__ = ["CentralSystem", "UseCaseResult"]


class CentralSystem:
    """A handle on a running server (what :func:`~chargeledger.core.server.run_server`
    hands to ``task_status``)."""

    def __init__(self, gateway: Gateway, store: Store, port: int) -> None:
        self.gateway = gateway
        self.store = store
        self.port = port

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
            raise StationOffline(f"station {station!r} is not connected")
        return session.protocol

    async def call(self, station: str, action: str, payload: Any) -> dict[str, Any]:
        """Message mode: send ``action`` with ``payload`` and return the station's answer."""
        return await self.gateway.call(station, action, payload)

    async def _use(self, station: str, request: usecases.Request) -> UseCaseResult:
        response = await self.call(station, request.action, request.payload)
        return request.result(response)

    # -- use cases (version-neutral) ----------------------------------------------------------

    async def remote_start(
        self,
        station: str,
        id_token: str,
        *,
        evse_id: int | None = None,
        connector_id: int | None = None,
        charging_limit_w: float | None = None,
    ) -> UseCaseResult:
        """Start a session for ``id_token`` (1.6 RemoteStartTransaction)."""
        request = usecases.remote_start(
            self.protocol(station), id_token, evse_id, connector_id, charging_limit_w
        )
        return await self._use(station, request)

    async def remote_stop(self, station: str, transaction_id: int | str) -> UseCaseResult:
        """Stop the transaction (1.6 RemoteStopTransaction)."""
        return await self._use(
            station, usecases.remote_stop(self.protocol(station), transaction_id)
        )

    async def reset(
        self, station: str, kind: ResetKind = "soft", *, evse_id: int | None = None
    ) -> UseCaseResult:
        """Reset the station: ``soft`` / ``on_idle`` (1.6 Soft) or ``hard`` / ``immediate``
        (1.6 Hard)."""
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
        """Read configuration; ``UseCaseResult.values`` maps each key to its value
        (1.6 GetConfiguration keys)."""
        request = usecases.read_configuration(self.protocol(station), keys)
        return await self._use(station, request)

    async def change_configuration(self, station: str, key: str, value: str) -> UseCaseResult:
        """Set one configuration key (1.6 ChangeConfiguration)."""
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
