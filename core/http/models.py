"""The HTTP API's bodies: msgspec structs beside the projections' and events' own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Generic, Literal, TypeVar, Union

import msgspec

from chargeledger.core.events import LoggedEvent
from chargeledger.core.usecases import USE_CASES, UseCaseArgs
from chargeledger.projections import Registration, StationState, TransactionState
from chargeledger.projections.billing import ChargeDetailRecord

__all__ = [
    "CdrPage",
    "DrainRequest",
    "DrainStarted",
    "EventPage",
    "Page",
    "PasswordAnswer",
    "PasswordRequest",
    "Readiness",
    "RegistrationRequest",
    "StationView",
    "TransactionPage",
    "UseCase",
]

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], kw_only=True):
    """One page of a list. ``next`` is the cursor to pass as ``after`` for the next page;
    ``null`` when there is nothing more (yet)."""

    items: list[T]
    next: int | None


class EventPage(Page[LoggedEvent]):
    """A page of the event log; ``next`` is a log position."""


class TransactionPage(Page[TransactionState]):
    """A page of transactions; ``next`` is the last item's ``started_position``."""


class StationView(msgspec.Struct, kw_only=True):
    """A station: its state folded from the log (a registered station never seen yet has the
    defaults), its registration, ``null`` when not registered, and ``links``: the paths of
    its other views (``device_model``, ``problems``, ``meter``, ``display_messages``,
    ``firmware``, ``logs``, ``monitors``, ``customer_information``, ...)."""

    state: StationState
    registration: Registration | None
    links: dict[str, str] = {}


class RegistrationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an admin says about a station they register: a description, the lowest
    security profile it may connect with (docs/security.md), whether it may connect."""

    description: str = ""
    profile: Annotated[int, msgspec.Meta(ge=0, le=3)] = 0
    enabled: bool = True


class PasswordRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A station's new HTTP Basic password; omitted: the server generates one."""

    password: Annotated[str, msgspec.Meta(min_length=16, max_length=40)] | None = None


class PasswordAnswer(msgspec.Struct, kw_only=True):
    """The password now set: shown this once, never stored (only its hash is recorded)."""

    password: str


class Readiness(msgspec.Struct, kw_only=True):
    """The node is ready for stations: the store answered (``position`` is its newest
    event's), the gateway listens and the node is not draining. ``node`` is its id,
    ``stations`` how many stations it holds."""

    ready: bool
    position: int
    node: str = ""
    stations: int = 0


class DrainStarted(msgspec.Struct, kw_only=True):
    """A drain was asked (``started``: by this request; ``false``: one was running)."""

    started: bool
    node: str
    code: int
    stations: int
    """Stations connected when it was asked: each is closed with ``code``."""
    timeout: float
    """Seconds a busy session is waited for (``drain_timeout``)."""


class DrainRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How to close the sessions: 1012 "service restart" (the default) or 1001 "going away"."""

    code: Literal[1012, 1001] = 1012


# -- use cases: the argument structs of the use-case table, tagged by ``use_case`` ----------

if TYPE_CHECKING:
    UseCase = UseCaseArgs
else:
    UseCase = Union[tuple(use_case.args for use_case in USE_CASES.values())]  # noqa: UP007
"""The body of a use-case command: one of the table's argument structs, tagged by
``use_case`` (derived from :data:`~chargeledger.core.usecases.USE_CASES`)."""


class CdrPage(Page[ChargeDetailRecord]):
    """A page of charge detail records; ``next`` is the last item's ``cursor``."""
