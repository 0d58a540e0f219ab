"""The ID-token registry's write side: what a registration may say, the events a change is
recorded as, and the CSV import format (docs/authorization.md).

:class:`CentralSystem` (the one door) and ``chargeledger tokens --store`` (no server running)
both build their events here, so a token is checked, and recorded, the same way whichever
way it came in. Nothing here touches the store.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from typing import Annotated, get_args

import msgspec

from chargeledger.core.events import TokenRegistered, TokenRemoved, token_stream
from chargeledger.projections.tokens import TOKEN_STATUSES, Tokens, expiry_instant
from chargeledger.schemas.v201 import IdTokenEnumType

__all__ = [
    "CSV_COLUMNS",
    "ID_TOKEN_TYPES",
    "TokenFields",
    "TokenRequest",
    "check_token",
    "read_csv",
    "registration_events",
    "removal_events",
]

ID_TOKEN_TYPES: tuple[str, ...] = get_args(IdTokenEnumType)
"""OCPP 2.0.1 ``IdTokenEnumType``: the types a token may be registered with (read from the
generated schema types, not written again)."""

CSV_COLUMNS = (
    "id_token",
    "type",
    "status",
    "expiry",
    "group",
    "max_concurrent",
    "note",
    "owner",
)
"""The columns ``chargeledger tokens import`` reads (a header row names them; only
``id_token`` is required, an empty cell is the field's default)."""


class TokenFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an operator says about a token they register (an add, or a full update: every
    field not given takes its default)."""

    type: str = "ISO14443"
    """One of :data:`ID_TOKEN_TYPES` (a 1.6 ``idTag`` matches a token of any type)."""
    status: str = "Accepted"
    """``Accepted``, ``Blocked``, ``Expired`` or ``Invalid``."""
    expiry: str | None = None
    """RFC 3339 with an offset; from then on the token is answered ``Expired``."""
    group: Annotated[str, msgspec.Meta(min_length=1, max_length=36)] | None = None
    """The group id (1.6 ``parentIdTag``, 2.0.1 ``groupIdToken``)."""
    max_concurrent: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """How many transactions the token may have running at once (omitted: no limit)."""
    note: str = ""
    owner: str = ""


class TokenRequest(TokenFields, kw_only=True, forbid_unknown_fields=True):
    """One token to register: its text and :class:`TokenFields`."""

    id_token: Annotated[str, msgspec.Meta(min_length=1, max_length=36)]
    """The token's text (2.0.1 allows 36 characters, 1.6 ``idTag`` 20)."""


def check_token(request: TokenRequest) -> None:
    """Raise ``ValueError`` saying what is wrong with ``request``: an unknown type or status,
    an expiry that is not RFC 3339 with an offset, limits the struct's annotations set (which
    ``msgspec.convert`` checks, but a hand-built struct does not)."""
    if not 1 <= len(request.id_token) <= 36:
        raise ValueError(f"id_token {request.id_token!r}: 1 to 36 characters")
    if request.type not in ID_TOKEN_TYPES:
        raise ValueError(
            f"{request.id_token}: type {request.type!r} is not one of {ID_TOKEN_TYPES}"
        )
    if request.status not in TOKEN_STATUSES:
        raise ValueError(
            f"{request.id_token}: status {request.status!r} is not one of {TOKEN_STATUSES}"
        )
    if request.expiry is not None:
        try:
            expiry_instant(request.expiry)
        except ValueError:
            raise ValueError(
                f"{request.id_token}: expiry {request.expiry!r} is not an RFC 3339 date-time "
                "with an offset (2027-01-01T00:00:00Z)"
            ) from None
    if request.group is not None and not 1 <= len(request.group) <= 36:
        raise ValueError(f"{request.id_token}: group {request.group!r}: 1 to 36 characters")
    if request.max_concurrent is not None and request.max_concurrent < 1:
        raise ValueError(f"{request.id_token}: max_concurrent must be at least 1")


def registration_events(
    requests: Iterable[TokenRequest], key: str, at: float
) -> list[tuple[str, TokenRegistered]]:
    """The ``(stream, event)`` pairs that record ``requests`` as asked by ``key`` at ``at``,
    each in a fresh stream; ``ValueError`` (nothing built) when any request is invalid."""
    requests = list(requests)
    for request in requests:
        check_token(request)
    pairs = []
    for request in requests:
        event = TokenRegistered(
            request_id=str(uuid.uuid4()), at=at, key=key, **msgspec.structs.asdict(request)
        )
        pairs.append((token_stream(event.request_id), event))
    return pairs


def removal_events(
    tokens: Tokens, id_token: str, type: str | None, key: str, at: float
) -> list[tuple[str, TokenRemoved]]:
    """The ``(stream, event)`` pairs that remove the token's registration of ``type`` from
    ``tokens``, or with ``type=None`` every type registered under that text; empty when none
    is registered."""
    found = [
        state
        for state in tokens.all()
        if state.id_token.casefold() == id_token.casefold() and type in (None, state.type)
    ]
    pairs = []
    for state in found:
        event = TokenRemoved(
            request_id=str(uuid.uuid4()), at=at, key=key, id_token=state.id_token, type=state.type
        )
        pairs.append((token_stream(event.request_id), event))
    return pairs


def read_csv(text: str) -> list[TokenRequest]:
    """The tokens of a CSV file (a header row of :data:`CSV_COLUMNS`, any subset in any order
    but with ``id_token``); ``ValueError`` naming the line for an unknown column, a missing
    ``id_token``, a ``max_concurrent`` that is not a number, or an invalid token. Blank lines
    are skipped."""
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    unknown = sorted(set(columns) - set(CSV_COLUMNS))
    if unknown or "id_token" not in columns:
        raise ValueError(
            f"CSV header {columns}: expected columns among {list(CSV_COLUMNS)}, with id_token"
        )
    requests = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise ValueError(f"line {line}: more cells than header columns")
        fields: dict[str, object] = {name: value for name, value in row.items() if value}
        try:
            if "max_concurrent" in fields:
                fields["max_concurrent"] = int(str(fields["max_concurrent"]))
            request = msgspec.convert(fields, TokenRequest)
            check_token(request)
        except (ValueError, msgspec.ValidationError) as exc:
            raise ValueError(f"line {line}: {exc}") from None
        requests.append(request)
    return requests
