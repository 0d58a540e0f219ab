"""The Python API of a running CSMS: send CALLs to stations and read the projections.

Every method awaits the station's answer and returns its CALLRESULT payload as a dict. They
raise, from :mod:`chargeledger.core.errors`:

* ``OutboundValidationError``: the payload violates the official schema; nothing was sent.
* ``StationOffline``: the station is not connected to this node, or left before answering.
* ``CallError``: the station answered with a CALLERROR (``code``, ``description``).
* ``CallTimeout``: no answer within ``Settings.call_timeout``; the timeout is recorded and a
  late answer is recorded and ignored.

:meth:`CentralSystem.call` is message mode: any action of the station's protocol version, raw
payload, schema-checked. The named methods are the OCPP 1.6 Core profile's CSMS-initiated
messages.
"""

from __future__ import annotations

from typing import Any, Literal

from chargeledger.core.gateway import Gateway
from chargeledger.core.store import Store
from chargeledger.projections import Views

__all__ = ["CentralSystem"]


def _present(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


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

    async def call(self, station: str, action: str, payload: Any) -> dict[str, Any]:
        """Message mode: send ``action`` with ``payload`` and return the station's answer."""
        return await self.gateway.call(station, action, payload)

    # -- OCPP 1.6 Core profile, CSMS-initiated ----------------------------------------------

    async def change_availability(
        self, station: str, connector_id: int, availability: Literal["Inoperative", "Operative"]
    ) -> dict[str, Any]:
        return await self.call(
            station, "ChangeAvailability", {"connectorId": connector_id, "type": availability}
        )

    async def change_configuration(self, station: str, key: str, value: str) -> dict[str, Any]:
        return await self.call(station, "ChangeConfiguration", {"key": key, "value": value})

    async def get_configuration(
        self, station: str, keys: list[str] | None = None
    ) -> dict[str, Any]:
        return await self.call(station, "GetConfiguration", _present(key=keys))

    async def clear_cache(self, station: str) -> dict[str, Any]:
        return await self.call(station, "ClearCache", {})

    async def remote_start_transaction(
        self,
        station: str,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self.call(
            station,
            "RemoteStartTransaction",
            _present(idTag=id_tag, connectorId=connector_id, chargingProfile=charging_profile),
        )

    async def remote_stop_transaction(self, station: str, transaction_id: int) -> dict[str, Any]:
        return await self.call(station, "RemoteStopTransaction", {"transactionId": transaction_id})

    async def reset(self, station: str, kind: Literal["Hard", "Soft"]) -> dict[str, Any]:
        return await self.call(station, "Reset", {"type": kind})

    async def unlock_connector(self, station: str, connector_id: int) -> dict[str, Any]:
        return await self.call(station, "UnlockConnector", {"connectorId": connector_id})

    async def data_transfer(
        self, station: str, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> dict[str, Any]:
        return await self.call(
            station, "DataTransfer", _present(vendorId=vendor_id, messageId=message_id, data=data)
        )
