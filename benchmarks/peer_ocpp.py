"""The peer the benchmarks compare ChargeLedger with: an OCPP 1.6 central system built the
way the ``ocpp`` package's documentation shows (asyncio, a ``websockets`` server, a
``ChargePoint`` subclass with ``@on`` handlers, the package's JSON-schema validation on), and
persisting nothing.

Run: ``python benchmarks/peer_ocpp.py --port 9001``. It answers BootNotification (Accepted),
Heartbeat, Authorize and StartTransaction (Accepted; transaction ids counted up in memory),
StopTransaction, MeterValues and StatusNotification. Logging is at WARNING: the documented
example logs every frame at INFO, which would charge the peer for writing logs we do not ask
ChargeLedger to write. The listen backlog is raised (see ``main``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as cp
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

_transaction_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ChargePoint(cp):  # type: ignore[misc]
    @on(Action.boot_notification)
    def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any
    ) -> Any:
        return call_result.BootNotification(
            current_time=_now(), interval=300, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=_now())

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> Any:
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs: Any
    ) -> Any:
        return call_result.StartTransaction(
            transaction_id=next(_transaction_ids),
            id_tag_info={"status": AuthorizationStatus.accepted},
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self, meter_stop: int, timestamp: str, transaction_id: int, **kwargs: Any
    ) -> Any:
        return call_result.StopTransaction(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list[Any], **kwargs: Any) -> Any:
        return call_result.MeterValues()

    @on(Action.status_notification)
    def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **kwargs: Any
    ) -> Any:
        return call_result.StatusNotification()


async def on_connect(websocket: websockets.ServerConnection) -> None:
    """For every new charge point that connects, create a ChargePoint and serve it."""
    if websocket.subprotocol is None:
        await websocket.close()
        return
    charge_point_id = websocket.request.path.strip("/").rsplit("/", 1)[-1]
    await ChargePoint(charge_point_id, websocket).start()


async def main(host: str, port: int) -> None:
    # One change from the documentation: asyncio listens with a backlog of 100, which drops
    # connection attempts during a storm of 1,000 and makes the kernel retry them a second
    # later; the benchmark would measure that timer instead of the peer.
    async with websockets.serve(
        on_connect, host, port, subprotocols=["ocpp1.6"], backlog=4096
    ) as server:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.close)
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.host, args.port))
