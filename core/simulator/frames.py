"""The CALL frames a simulated station sends, for OCPP 1.6J and 2.0.1, pre-encoded.

Every payload is a constant byte template built once at import; per call only the message id
and the values that change (timestamp, meter readings, transaction id, sequence number) are
%-formatted into it. That keeps a realistic three-phase MeterValues frame (about 1 KB, nine
sampled values) at a few microseconds to build, so the generator stays cheap.

A :class:`StationFrames` belongs to one station: it knows the station's transaction (the id
the CSMS gave in 1.6, the one the station made up in 2.0.1), its 2.0.1 sequence number and
its :class:`Meter`. :meth:`StationFrames.check_answer` reads the CALLRESULTs that matter
(boot status, id tag status, the 1.6 transaction id).
"""

from __future__ import annotations

import random
import time
import uuid
from abc import ABC, abstractmethod
from typing import Any

import msgspec

from chargeledger.core.times import rfc3339
from chargeledger.schemas import OCPP16, OCPP201

__all__ = ["Meter", "StationFrames", "frames_for", "rfc3339_ms"]

_HEARTBEAT = b"{}"

# measurand, phase, unit, location, value format: the nine samples of a three-phase charger.
_SAMPLED = (
    (b"Energy.Active.Import.Register", None, b"Wh", b"Outlet", b"%d"),
    (b"Power.Active.Import", None, b"W", b"Outlet", b"%d"),
    (b"Current.Import", b"L1", b"A", b"Outlet", b"%.1f"),
    (b"Current.Import", b"L2", b"A", b"Outlet", b"%.1f"),
    (b"Current.Import", b"L3", b"A", b"Outlet", b"%.1f"),
    (b"Voltage", b"L1-N", b"V", b"Outlet", b"%.1f"),
    (b"Voltage", b"L2-N", b"V", b"Outlet", b"%.1f"),
    (b"Voltage", b"L3-N", b"V", b"Outlet", b"%.1f"),
    (b"SoC", None, b"Percent", b"EV", b"%d"),
)

POWER_W = 11000.0
"""A 3 x 16 A AC charge."""

BATTERY_WH = 60000.0


def _sampled_values(protocol: str) -> bytes:
    """The sampledValue array as a template with one %-slot per value, for ``protocol``."""
    items = []
    for measurand, phase, unit, location, value_format in _SAMPLED:
        phase_field = b',"phase":"' + phase + b'"' if phase else b""
        if protocol == OCPP16:  # 1.6 values are strings; unit is a flat field
            item = (
                b'{"value":"'
                + value_format
                + b'","context":"Sample.Periodic","measurand":"'
                + measurand
                + b'"'
                + phase_field
                + b',"location":"'
                + location
                + b'","unit":"'
                + unit
                + b'"}'
            )
        else:
            item = (
                b'{"value":'
                + value_format
                + b',"context":"Sample.Periodic","measurand":"'
                + measurand
                + b'"'
                + phase_field
                + b',"location":"'
                + location
                + b'","unitOfMeasure":{"unit":"'
                + unit
                + b'"}}'
            )
        items.append(item)
    return b"[" + b",".join(items) + b"]"


def rfc3339_ms(at: float | None = None) -> bytes:
    """``at`` (default: now) as RFC 3339 UTC with milliseconds, as bytes for the templates."""
    return rfc3339(time.time() if at is None else at).encode()


class Meter:
    """The station's energy meter during a charge at about 11 kW: the register advances with
    wall time; voltages and currents jitter by a few percent, as a real meter's do."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.energy_wh = rng.uniform(1e5, 5e6)
        self._session_start_wh = self.energy_wh
        self._read_at = time.monotonic()

    def start_session(self) -> int:
        """Start a charge; the register reading (Wh) at its start."""
        self.read()
        self._session_start_wh = self.energy_wh
        return int(self.energy_wh)

    def read(self) -> tuple[float, ...]:
        """The nine sampled values of ``_SAMPLED``, in its order, advancing the register."""
        rng = self._rng
        now = time.monotonic()
        power = POWER_W * rng.uniform(0.97, 1.03)
        self.energy_wh += power * (now - self._read_at) / 3600.0
        self._read_at = now
        v1, v2, v3 = rng.uniform(226, 234), rng.uniform(226, 234), rng.uniform(226, 234)
        per_phase = power / 3.0
        soc = min(100.0, 20.0 + 100.0 * (self.energy_wh - self._session_start_wh) / BATTERY_WH)
        return (
            self.energy_wh,
            power,
            per_phase / v1,
            per_phase / v2,
            per_phase / v3,
            v1,
            v2,
            v3,
            soc,
        )


class StationFrames(ABC):
    """The frames of one station. A subclass per protocol holds its templates; every method
    returns ``(action, frame text)`` for the given message id."""

    protocol: str
    _token_info: str
    """The answer field carrying the id tag's status."""
    _BOOT: bytes
    _STATUS: bytes
    """Slots: status, timestamp."""
    _AUTHORIZE: bytes
    """Slot: id tag."""

    def __init__(self, id_tag: str, rng: random.Random) -> None:
        self.id_tag = id_tag.encode()
        self.meter = Meter(rng)
        self.transaction: bytes | None = None
        """The open transaction's id as JSON text, or None."""
        self.transaction_tag = self.id_tag
        """The id tag (JSON-escaped) the open transaction was started with."""

    @staticmethod
    def call(message_id: bytes, action: bytes, payload: bytes) -> bytes:
        return b'[2,"%s","%s",%s]' % (message_id, action, payload)

    def message(self, message_id: bytes, action: str, payload: dict[str, Any]) -> tuple[str, bytes]:
        """Any CALL, its payload encoded now: for the rare ones (what the CSMS triggers,
        reports), not worth a template."""
        return action, self.call(message_id, action.encode(), msgspec.json.encode(payload))

    def boot(self, message_id: bytes) -> tuple[str, bytes]:
        return "BootNotification", self.call(message_id, b"BootNotification", self._BOOT)

    def heartbeat(self, message_id: bytes) -> tuple[str, bytes]:
        return "Heartbeat", self.call(message_id, b"Heartbeat", _HEARTBEAT)

    def status_notification(self, message_id: bytes, status: str) -> tuple[str, bytes]:
        payload = self._STATUS % (status.encode(), rfc3339_ms())
        return "StatusNotification", self.call(message_id, b"StatusNotification", payload)

    def authorize(self, message_id: bytes) -> tuple[str, bytes]:
        return "Authorize", self.call(message_id, b"Authorize", self._AUTHORIZE % self.id_tag)

    @abstractmethod
    def start_transaction(self, message_id: bytes) -> tuple[str, bytes]:
        """Start a charge on connector 1 (1.6 StartTransaction, 2.0.1 TransactionEvent)."""

    @abstractmethod
    def remote_start_transaction(
        self, message_id: bytes, id_tag: str, token_type: str, remote_start_id: int | None
    ) -> tuple[str, bytes]:
        """Start a charge on connector 1 as the CSMS asked, for ``id_tag`` (2.0.1: of
        ``token_type``, its ``remoteStartId`` reported)."""

    @abstractmethod
    def meter_values(self, message_id: bytes) -> tuple[str, bytes]:
        """A periodic three-phase sample of the open transaction."""

    @abstractmethod
    def stop_transaction(self, message_id: bytes, why: str = "local") -> tuple[str, bytes]:
        """End the open transaction; ``why``: ``local`` (the driver), ``remote`` (the CSMS
        asked), ``reset`` (the station resets)."""

    def check_answer(self, kind: str, payload: dict[str, Any]) -> str | None:
        """Read the CALLRESULT payload of the frame ``kind`` (a method name above); the
        reason it is a refusal (boot not Accepted, id tag not Accepted, no transaction id),
        or None. Keeps what later frames need (the 1.6 transaction id)."""
        if kind == "boot":
            status = payload.get("status")
            return None if status == "Accepted" else f"boot {status}"
        if kind in ("authorize", "start_transaction", "remote_start_transaction"):
            if kind != "authorize" and self.protocol == OCPP16:
                transaction_id = payload.get("transactionId")
                if type(transaction_id) is not int:
                    return "StartTransaction answered without a transactionId"
                self.transaction = b"%d" % transaction_id
            # 2.0.1 may leave idTokenInfo out of a TransactionEvent answer.
            status = (payload.get(self._token_info) or {}).get("status", "Accepted")
            return None if status == "Accepted" else f"id tag {status}"
        return None


class _Frames16(StationFrames):
    protocol = OCPP16
    _token_info = "idTagInfo"
    _BOOT = (
        b'{"chargePointVendor":"ChargeLedger","chargePointModel":"Simulator-11kW",'
        b'"firmwareVersion":"1.0.0"}'
    )
    _STATUS = b'{"connectorId":1,"errorCode":"NoError","status":"%s","timestamp":"%s"}'
    _AUTHORIZE = b'{"idTag":"%s"}'
    _START = b'{"connectorId":1,"idTag":"%s","meterStart":%d,"timestamp":"%s"}'
    _METER_VALUES = (
        b'{"connectorId":1,"transactionId":%s,"meterValue":[{"timestamp":"%s","sampledValue":'
        + _sampled_values(OCPP16)
        + b"}]}"
    )
    _STOP = b'{"transactionId":%s,"idTag":"%s","meterStop":%d,"timestamp":"%s","reason":"%s"}'
    _STOP_REASONS = {"local": b"Local", "remote": b"Remote", "reset": b"SoftReset"}

    def start_transaction(self, message_id: bytes) -> tuple[str, bytes]:
        self.transaction_tag = self.id_tag
        meter_start = self.meter.start_session()
        payload = self._START % (self.id_tag, meter_start, rfc3339_ms())
        return "StartTransaction", self.call(message_id, b"StartTransaction", payload)

    def remote_start_transaction(
        self, message_id: bytes, id_tag: str, token_type: str, remote_start_id: int | None
    ) -> tuple[str, bytes]:
        self.transaction_tag = _escaped(id_tag)
        meter_start = self.meter.start_session()
        payload = self._START % (self.transaction_tag, meter_start, rfc3339_ms())
        return "StartTransaction", self.call(message_id, b"StartTransaction", payload)

    def meter_values(self, message_id: bytes) -> tuple[str, bytes]:
        assert self.transaction is not None, "MeterValues outside a transaction"
        payload = self._METER_VALUES % (self.transaction, rfc3339_ms(), *self.meter.read())
        return "MeterValues", self.call(message_id, b"MeterValues", payload)

    def stop_transaction(self, message_id: bytes, why: str = "local") -> tuple[str, bytes]:
        assert self.transaction is not None, "StopTransaction outside a transaction"
        energy = int(self.meter.read()[0])
        reason = self._STOP_REASONS[why]
        payload = self._STOP % (
            self.transaction,
            self.transaction_tag,
            energy,
            rfc3339_ms(),
            reason,
        )
        self.transaction = None
        return "StopTransaction", self.call(message_id, b"StopTransaction", payload)


class _Frames201(StationFrames):
    protocol = OCPP201
    _token_info = "idTokenInfo"
    _BOOT = (
        b'{"reason":"PowerUp","chargingStation":{"model":"Simulator-11kW",'
        b'"vendorName":"ChargeLedger","firmwareVersion":"1.0.0"}}'
    )
    _STATUS = b'{"connectorStatus":"%s","timestamp":"%s","evseId":1,"connectorId":1}'
    _TOKEN = b'{"idToken":"%s","type":"%s"}'
    _AUTHORIZE = b'{"idToken":{"idToken":"%s","type":"ISO14443"}}'
    _START = (
        b'{"eventType":"Started","timestamp":"%s","triggerReason":"%s","seqNo":%d,'
        b'"transactionInfo":{"transactionId":%s,"chargingState":"Charging"%s},'
        b'"evse":{"id":1,"connectorId":1},"idToken":' + _TOKEN + b","
        b'"meterValue":[{"timestamp":"%s","sampledValue":[{"value":%d,'
        b'"context":"Transaction.Begin","measurand":"Energy.Active.Import.Register",'
        b'"unitOfMeasure":{"unit":"Wh"}}]}]}'
    )
    _UPDATED = (
        b'{"eventType":"Updated","timestamp":"%s","triggerReason":"MeterValuePeriodic",'
        b'"seqNo":%d,"transactionInfo":{"transactionId":%s,"chargingState":"Charging"},'
        b'"meterValue":[{"timestamp":"%s","sampledValue":' + _sampled_values(OCPP201) + b"}]}"
    )
    _ENDED = (
        b'{"eventType":"Ended","timestamp":"%s","triggerReason":"%s","seqNo":%d,'
        b'"transactionInfo":{"transactionId":%s,"chargingState":"EVConnected",'
        b'"stoppedReason":"%s"},"idToken":' + _TOKEN + b","
        b'"meterValue":[{"timestamp":"%s","sampledValue":[{"value":%d,'
        b'"context":"Transaction.End","measurand":"Energy.Active.Import.Register",'
        b'"unitOfMeasure":{"unit":"Wh"}}]}]}'
    )

    _STOP_REASONS = {
        "local": (b"StopAuthorized", b"Local"),
        "remote": (b"RemoteStop", b"Remote"),
        "reset": (b"ResetCommand", b"ImmediateReset"),
    }

    def __init__(self, id_tag: str, rng: random.Random) -> None:
        super().__init__(id_tag, rng)
        self.seq_no = 0
        self.token_type = b"ISO14443"
        """The type of the open transaction's idToken."""

    def _event(self, message_id: bytes, payload: bytes) -> tuple[str, bytes]:
        self.seq_no += 1
        return "TransactionEvent", self.call(message_id, b"TransactionEvent", payload)

    def start_transaction(self, message_id: bytes) -> tuple[str, bytes]:
        return self._start(message_id, self.id_tag, b"ISO14443", b"Authorized", b"")

    def remote_start_transaction(
        self, message_id: bytes, id_tag: str, token_type: str, remote_start_id: int | None
    ) -> tuple[str, bytes]:
        extra = b"" if remote_start_id is None else b',"remoteStartId":%d' % remote_start_id
        return self._start(
            message_id, _escaped(id_tag), _escaped(token_type), b"RemoteStart", extra
        )

    def _start(
        self, message_id: bytes, tag: bytes, token_type: bytes, trigger: bytes, extra: bytes
    ) -> tuple[str, bytes]:
        # 2.0.1: the station names the transaction; seqNo counts per transaction from 0.
        self.transaction = b'"%s"' % str(uuid.uuid4()).encode()
        self.transaction_tag, self.token_type = tag, token_type
        self.seq_no = 0
        meter_start = self.meter.start_session()
        now = rfc3339_ms()
        payload = self._START % (
            now,
            trigger,
            self.seq_no,
            self.transaction,
            extra,
            tag,
            token_type,
            now,
            meter_start,
        )
        return self._event(message_id, payload)

    def meter_values(self, message_id: bytes) -> tuple[str, bytes]:
        assert self.transaction is not None, "TransactionEvent Updated outside a transaction"
        now = rfc3339_ms()
        payload = self._UPDATED % (now, self.seq_no, self.transaction, now, *self.meter.read())
        return self._event(message_id, payload)

    def stop_transaction(self, message_id: bytes, why: str = "local") -> tuple[str, bytes]:
        assert self.transaction is not None, "TransactionEvent Ended outside a transaction"
        now = rfc3339_ms()
        energy = int(self.meter.read()[0])
        trigger, reason = self._STOP_REASONS[why]
        payload = self._ENDED % (
            now,
            trigger,
            self.seq_no,
            self.transaction,
            reason,
            self.transaction_tag,
            self.token_type,
            now,
            energy,
        )
        self.transaction = None
        return self._event(message_id, payload)


def _escaped(text: str) -> bytes:
    """``text`` as the inside of a JSON string (what the templates' ``"%s"`` slots take)."""
    return msgspec.json.encode(text)[1:-1]


_FRAMES: dict[str, type[StationFrames]] = {OCPP16: _Frames16, OCPP201: _Frames201}


def frames_for(protocol: str, id_tag: str, rng: random.Random) -> StationFrames:
    """The frames of a new ``protocol`` station charging with ``id_tag``.

    Raises ``ValueError`` for a protocol we do not simulate."""
    try:
        return _FRAMES[protocol](id_tag, rng)
    except KeyError:
        raise ValueError(f"cannot simulate {protocol!r}; choose one of {list(_FRAMES)}") from None
