"""Firmware use cases (1.6 Firmware Management and its security extension, 2.0.1 L): update
one station's firmware, and publish / unpublish a firmware file on a 2.0.1 local controller.

The CSMS hosts no file: it sends the URL it is given. ``update_firmware`` picks the request
the station's version has:

* 1.6 ``UpdateFirmware`` (``location``, ``retrieveDate``, ``retries``, ``retryInterval``),
  answered ``{}``: the station acknowledged, read as ``Accepted``;
* 1.6 ``SignedUpdateFirmware`` (security extension) when a ``signing_certificate`` and a
  ``signature`` are given: ``requestId`` and ``firmware`` {``location``,
  ``retrieveDateTime``, ``installDateTime``, ``signingCertificate``, ``signature``};
* 2.0.1 ``UpdateFirmware``: ``requestId`` and the same ``firmware`` (certificate and
  signature optional).

The ``requestId`` is the one door's fresh request id (``values.request_id``); the firmware
projection follows it through the station's status notifications.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from chargeledger.core.errors import InvalidUseCaseArguments, UnsupportedUseCase
from chargeledger.core.times import rfc3339
from chargeledger.core.usecase_base import (
    Request,
    UseCase,
    UseCaseArgs,
    UseCaseResult,
    only_201,
    present,
    status_reader,
)
from chargeledger.projections.reservations import parse_time
from chargeledger.schemas import OCPP16

__all__ = [
    "USE_CASES",
    "PublishFirmwareArgs",
    "UnpublishFirmwareArgs",
    "UpdateFirmwareArgs",
    "publish_firmware",
    "unpublish_firmware",
    "update_firmware",
]

_Checksum = Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{32}$")]


class UpdateFirmwareArgs(UseCaseArgs, tag="update_firmware"):
    """Have the station download the firmware at `location` (the CSMS hosts no file) from
    `retrieve_date` (RFC 3339) and install it (2.0.1 and signed 1.6: at `install_date`),
    retrying `retries` times every `retry_interval` seconds. With `signing_certificate` and
    `signature` (PEM, base64): 1.6 SignedUpdateFirmware (security extension), 2.0.1 a signed
    UpdateFirmware. `values.request_id`: the request followed in
    `/api/stations/{id}/firmware`."""

    location: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    retrieve_date: str
    retries: Annotated[int, msgspec.Meta(ge=0)] | None = None
    retry_interval: Annotated[int, msgspec.Meta(ge=0)] | None = None
    install_date: str | None = None
    signing_certificate: str | None = None
    signature: str | None = None


class PublishFirmwareArgs(UseCaseArgs, tag="publish_firmware"):
    """2.0.1 local controller: download the firmware at `location` (MD5 `checksum`, 32 hex
    digits) and publish it to the stations behind it, retrying `retries` times every
    `retry_interval` seconds; its PublishFirmwareStatusNotifications fold into
    `/api/stations/{id}/firmware`."""

    location: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    checksum: _Checksum
    retries: Annotated[int, msgspec.Meta(ge=0)] | None = None
    retry_interval: Annotated[int, msgspec.Meta(ge=0)] | None = None


class UnpublishFirmwareArgs(UseCaseArgs, tag="unpublish_firmware"):
    """2.0.1 local controller: stop publishing the firmware of MD5 `checksum`; `status`
    `Unpublished`, `NoFirmware` or `PublishInProgress`."""

    checksum: _Checksum


def _instant(name: str, text: str) -> str:
    """``text`` as we send times (RFC 3339 UTC); ``InvalidUseCaseArguments`` when it is none."""
    at = parse_time(text)
    if at is None:
        raise InvalidUseCaseArguments(f"{name} {text!r} is not an RFC 3339 time")
    return rfc3339(at)


def update_firmware(protocol: str, args: UpdateFirmwareArgs, request_id: int) -> Request:
    """The station's version of ``args`` (see the module doc); ``InvalidUseCaseArguments``
    for a certificate without a signature (or the reverse) or a time that is none,
    ``UnsupportedUseCase`` for an install time in an unsigned 1.6 update."""
    signed = args.signing_certificate is not None or args.signature is not None
    if signed and (args.signing_certificate is None or args.signature is None):
        raise InvalidUseCaseArguments(
            "a signed firmware update needs both signing_certificate and signature"
        )
    retrieve = _instant("retrieve_date", args.retrieve_date)
    install = None if args.install_date is None else _instant("install_date", args.install_date)
    if protocol == OCPP16 and not signed:
        if install is not None:
            raise UnsupportedUseCase(
                "OCPP 1.6 UpdateFirmware has no install time: sign the update"
                " (SignedUpdateFirmware) or leave install_date out"
            )
        payload = present(
            location=args.location,
            retrieveDate=retrieve,
            retries=args.retries,
            retryInterval=args.retry_interval,
        )
        return Request(protocol, "UpdateFirmware", payload, _acknowledged(protocol))
    firmware = present(
        location=args.location,
        retrieveDateTime=retrieve,
        installDateTime=install,
        signingCertificate=args.signing_certificate,
        signature=args.signature,
    )
    payload = present(
        requestId=request_id,
        firmware=firmware,
        retries=args.retries,
        retryInterval=args.retry_interval,
    )
    action = "SignedUpdateFirmware" if protocol == OCPP16 else "UpdateFirmware"
    read = status_reader(protocol, action, {"request_id": request_id})
    return Request(protocol, action, payload, read)


def _acknowledged(protocol: str) -> Any:
    """1.6 UpdateFirmware's answer is empty: the station took the request."""

    def read(response: dict[str, Any]) -> UseCaseResult:
        return UseCaseResult(
            protocol=protocol,
            action="UpdateFirmware",
            status="Accepted",
            accepted=True,
            response=response,
        )

    return read


def publish_firmware(protocol: str, args: PublishFirmwareArgs, request_id: int) -> Request:
    """2.0.1 PublishFirmware (local controllers)."""
    only_201(protocol, "PublishFirmware")
    payload = present(
        location=args.location,
        checksum=args.checksum,
        requestId=request_id,
        retries=args.retries,
        retryInterval=args.retry_interval,
    )
    read = status_reader(protocol, "PublishFirmware", {"request_id": request_id})
    return Request(protocol, "PublishFirmware", payload, read)


def unpublish_firmware(protocol: str, args: UnpublishFirmwareArgs) -> Request:
    """2.0.1 UnpublishFirmware (local controllers)."""
    only_201(protocol, "UnpublishFirmware")

    read = status_reader(protocol, "UnpublishFirmware", accepted=frozenset({"Unpublished"}))
    return Request(protocol, "UnpublishFirmware", {"checksum": args.checksum}, read)


USE_CASES: tuple[UseCase[Any], ...] = (
    UseCase[UpdateFirmwareArgs]("update_firmware", UpdateFirmwareArgs, update_firmware),
    UseCase[PublishFirmwareArgs]("publish_firmware", PublishFirmwareArgs, publish_firmware),
    UseCase[UnpublishFirmwareArgs](
        "unpublish_firmware",
        UnpublishFirmwareArgs,
        lambda protocol, a, _: unpublish_firmware(protocol, a),
    ),
)
"""The firmware block's use cases, gathered by ``chargeledger.core.usecases.USE_CASES``."""
