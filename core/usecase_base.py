"""What every use case is made of: its argument struct, the request it builds, the answer read
back, and the helpers that map EVSEs and connectors between the versions.

Split from :mod:`chargeledger.core.usecases` so that each functional block can declare its
use cases in a module of its own (``core/usecases_<block>.py``, a tuple ``USE_CASES`` of
:class:`UseCase`) that the table in ``usecases`` gathers: the table is still the one place
every use case is listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from chargeledger.core.errors import UnsupportedUseCase
from chargeledger.core.settings import ApiRole
from chargeledger.projections import Views
from chargeledger.schemas import OCPP16

__all__ = [
    "ACCEPTED_STATUSES",
    "Builder",
    "Check",
    "ReportProbe",
    "ReportProgress",
    "Request",
    "UseCase",
    "UseCaseArgs",
    "UseCaseResult",
    "connector_16",
    "evse_201",
    "only_201",
    "present",
    "status_reader",
]


class UseCaseResult(msgspec.Struct, frozen=True, kw_only=True):
    """The station's answer to a use case.

    ``status`` is the answer's status as the station sent it (``Accepted``, ``Rejected``,
    ``Unlocked``, ...); ``accepted`` says whether it did what was asked; ``values`` holds
    what a read returned (configuration key -> value); ``response`` is the raw CALLRESULT
    payload, ``action`` and ``protocol`` what was sent."""

    protocol: str
    action: str
    status: str
    accepted: bool
    response: dict[str, Any]
    values: dict[str, Any] = {}


ACCEPTED_STATUSES = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired"})


class ReportProgress(msgspec.Struct, frozen=True):
    """How far the data a request asked for, sent later in the station's own CALLs, is
    folded: whether all of it is there, and the result's ``values`` from it."""

    complete: bool
    values: dict[str, Any]


ReportProbe = Callable[[Views, str], ReportProgress]
"""Reads, from the views and the station id, how far a report has arrived."""


class Request(msgspec.Struct, frozen=True):
    """One CALL that carries out a use case, and how to read its answer."""

    protocol: str
    action: str
    payload: dict[str, Any]
    reader: Callable[[dict[str, Any]], UseCaseResult] | None = None
    """Reads the answer; by default its ``status`` field."""
    report: ReportProbe | None = None
    """For a request whose data arrives later, in parts the station sends (NotifyReport,
    NotifyDisplayMessages, ...): once the answer is accepted, ``CentralSystem`` waits, woken
    by each commit, until the probe says the report is complete (at most ``call_timeout``),
    and the result's ``values`` are the probe's."""

    def result(self, response: dict[str, Any]) -> UseCaseResult:
        if self.reader is not None:
            return self.reader(response)
        status = str(response.get("status", ""))
        return UseCaseResult(
            protocol=self.protocol,
            action=self.action,
            status=status,
            accepted=status in ACCEPTED_STATUSES,
            response=response,
        )


def status_reader(
    protocol: str,
    action: str,
    values: dict[str, Any] | None = None,
    accepted: frozenset[str] = ACCEPTED_STATUSES,
) -> Callable[[dict[str, Any]], UseCaseResult]:
    """A reader of an answer's ``status`` that counts ``accepted`` statuses as accepted and
    returns ``values`` (what the CSMS chose for the request, e.g. the id it allocated)."""

    def read(response: dict[str, Any]) -> UseCaseResult:
        status = str(response.get("status", ""))
        return UseCaseResult(
            protocol=protocol,
            action=action,
            status=status,
            accepted=status in accepted,
            response=response,
            values=values or {},
        )

    return read


def present(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def only_201(protocol: str, use_case: str) -> None:
    if protocol == OCPP16:
        raise UnsupportedUseCase(f"{use_case} exists in OCPP 2.0.1 only")


def connector_16(evse_id: int | None, connector_id: int | None) -> int | None:
    """The 1.6 connector for an EVSE and connector: EVSE N's connector 1 is connector N."""
    if evse_id is None:
        return connector_id
    if connector_id not in (None, 1):
        raise UnsupportedUseCase(
            f"OCPP 1.6 has no connector {connector_id} of EVSE {evse_id}: its connector N is"
            " EVSE N's only connector"
        )
    return evse_id


def evse_201(evse_id: int | None, connector_id: int | None) -> dict[str, Any] | None:
    """The 2.0.1 ``EVSEType`` (``None``: the whole station) for an EVSE and connector; a
    ``connector_id`` given alone is 1.6 numbering (connector N is EVSE N's connector 1)."""
    if evse_id is None and connector_id:
        return {"id": connector_id, "connectorId": 1}
    if not evse_id:
        return None
    return present(id=evse_id, connectorId=connector_id)


class UseCaseArgs(
    msgspec.Struct,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag_field="use_case",
):
    """The arguments of one use case. Each subclass is tagged with its use case's name, so a
    JSON body ``{"use_case": "reset", "kind": "hard"}`` decodes to :class:`ResetArgs`."""


A = TypeVar("A", bound=UseCaseArgs)

Builder = Callable[[str, A, int], Request]
"""Builds the request for a protocol version from the arguments and a fresh request id."""

Check = Callable[[Views, str, str, A, float], None]
"""Checks the arguments given the views, the station, its protocol version and the time
(UNIX seconds); raises ``InvalidUseCaseArguments`` or ``UnsupportedUseCase`` to refuse."""


class UseCase(msgspec.Struct, Generic[A], frozen=True):
    """One use case: its name, argument struct, per-version request builder, and the API
    role a caller needs. The request's ``reader`` reads the station's answer."""

    name: str
    args: type[A]
    build: Builder[A]
    role: ApiRole = "operator"
    secret: str | None = None
    """The argument that is a password: never recorded in clear (``CentralSystem`` records
    its hash as ``<name>_hash``), generated when ``None`` and returned once in ``values``."""
    check: Check[A] | None = None
    """Run by ``CentralSystem`` before anything is recorded (the station must be connected
    then): refuses arguments the station's state or the time make wrong."""

    @property
    def summary(self) -> str:
        """What it does: the argument struct's docstring on one line, in markdown."""
        return " ".join((self.args.__doc__ or "").split()).replace("``", "`")

    @property
    def fields(self) -> tuple[str, ...]:
        """The argument names, in declaration order."""
        return self.args.__struct_fields__
