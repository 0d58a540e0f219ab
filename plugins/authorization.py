"""Authorization (1.6 Core Authorize / 2.0.1 C): which tokens may charge, in either version.

One decision per token (:func:`decide`), spelled per version: 1.6 ``idTagInfo`` (``status``,
``expiryDate``, ``parentIdTag``), 2.0.1 ``idTokenInfo`` (``status``, ``cacheExpiryDateTime``,
``groupIdToken``). It answers Authorize here, and StartTransaction, StopTransaction and
TransactionEvent in the transactions block. A 2.0.1 ``NoAuthorization`` token (the station
charges without asking anyone) is always Accepted. docs/authorization.md has the whole story.

Where the decision comes from, first match wins:

1. The ID-token registry (``views.tokens``, changed through the API / ``chargeledger
   tokens``), matched case-insensitively; a 1.6 ``idTag`` matches a token of any type, a
   2.0.1 ``idToken`` only its own type. Its status, except that an Accepted token is
   ``Expired`` once its ``expiry`` is not after the CALL's time (``call.at``, never the
   clock), and ``ConcurrentTx`` when it already has ``max_concurrent`` running transactions
   we answered Accepted (counted from ``views.transactions``, the CALL's own transaction
   excepted: one refused, that the station ran anyway, takes no place; never applied to a
   1.6 StopTransaction).
2. The seed lists of ``[plugins.authorization]`` (exact text, any type): ``blocked``
   (Blocked), ``expired`` (Expired), ``known`` (Accepted), ``groups`` (token -> group id:
   Accepted, with that group).
3. Unknown: ``Settings.unknown_tokens``: ``reject`` (1.6 Invalid, 2.0.1 Unknown) or
   ``accept``; by default ``reject`` once any token is registered or ``known`` is non-empty,
   ``accept`` otherwise (a CSMS without a token database).

The cache expiry sent (``expiryDate`` / ``cacheExpiryDateTime``) is the earliest of the
token's ``expiry`` (when still ahead), the CALL's time plus
``Settings.authorization_cache_max_seconds`` and the CALL's time plus the seed option
``cache_expiry_seconds``; none of these: none is sent.

When a token is registered Blocked, Expired or Invalid (or with an expiry already past)
while it has running transactions, ``Settings.blocked_while_charging = "remote_stop"`` makes
the react hook stop them (RemoteStopTransaction / RequestStopTransaction, through the one
door, recorded as asked by ``plugins``); with ``station`` (the default) the station decides,
from the status it gets at its next CALL carrying the token (``StopTransactionOnInvalidId``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from chargeledger.core.plugin import (
    OCPP16,
    Command,
    Exchange,
    InboundCall,
    Recorded,
    Reply,
    SendCall,
    Settings,
    TokenRegistered,
    TokenState,
    TransactionState,
    Views,
    answers,
    expiry_instant,
    hookimpl,
    is_v16,
    plugin_options,
    reacts_to,
    rfc3339,
)

__all__ = [
    "Decision",
    "chargeledger_answer_call",
    "chargeledger_react",
    "decide",
    "id_tag_info",
    "id_token_info",
    "running_transactions",
    "token_answer",
]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What the registry, or the seed lists, say of a token, whatever the protocol version."""

    status: str
    """``Accepted``, ``Blocked``, ``Expired``, ``Invalid``, ``ConcurrentTx``, or ``Unknown``
    (not registered, and unknown tokens are rejected)."""
    expiry: str | None
    """Until when the station may cache the answer (RFC 3339), ``None`` for no limit."""
    group: str | None


def _same_token(transaction: TransactionState, state: TokenState) -> bool:
    if transaction.id_tag is None or transaction.id_tag.casefold() != state.id_token.casefold():
        return False
    return transaction.id_token_type in (None, state.type)


def running_transactions(views: Views, state: TokenState) -> list[TransactionState]:
    """The active transactions charged to the token: 1.6 ones still the latest of their
    connector (a start never stopped, overtaken by a later start there, is not running),
    2.0.1 ones not Ended. Matches as the decision does: case-insensitively, a 1.6 ``idTag``
    whatever the token's type."""
    transactions = views.transactions
    return [
        transaction
        for transaction in transactions.all()
        if transaction.status == "active"
        and _same_token(transaction, state)
        and (
            not is_v16(transaction.protocol)
            or transactions.active_on(transaction.station, transaction.connector_id) is transaction
        )
    ]


def _registered_status(
    state: TokenState, views: Views, at: float, current: tuple[str, int | str] | None, limit: bool
) -> str:
    if state.status != "Accepted":
        return state.status
    if state.expiry is not None and _instant(state.expiry) <= at:
        return "Expired"
    if limit and state.max_concurrent is not None:
        others = [
            transaction
            for transaction in running_transactions(views, state)
            if transaction.id_tag_status == "Accepted"
            and (transaction.station, transaction.transaction_id) != current
        ]
        if len(others) >= state.max_concurrent:
            return "ConcurrentTx"
    return "Accepted"


def _instant(expiry: str) -> float:
    """The expiry's instant; an unreadable one (the door refuses them) counts as past."""
    try:
        return expiry_instant(expiry)
    except ValueError:
        return float("-inf")


def _seeded(token: str, table: dict[str, Any], views: Views | None, settings: Settings) -> str:
    known = table.get("known", [])
    if token in table.get("blocked", []):
        return "Blocked"
    if token in table.get("expired", []):
        return "Expired"
    if token in known or token in table.get("groups", {}):
        return "Accepted"
    policy = settings.unknown_tokens
    if policy is None:
        registered = views is not None and len(views.tokens) > 0
        policy = "reject" if registered or known else "accept"
    return "Accepted" if policy == "accept" else "Unknown"


def decide(
    token: str,
    settings: Settings,
    at: float,
    views: Views | None = None,
    *,
    type: str | None = None,
    current: tuple[str, int | str] | None = None,
    limit: bool = True,
) -> Decision:
    """The decision for ``token`` (of ``type``; ``None`` for a 1.6 ``idTag``) at ``at`` (the
    CALL's time): from the registry in ``views`` (``None``: the seed lists only), the seed
    lists, then the unknown-token policy (see the module docstring). ``current``: the
    (station, transaction id) the CALL is about, not counted against ``max_concurrent``;
    ``limit=False``: that limit is not applied (a stop)."""
    table = plugin_options(settings, "authorization")
    state = None if views is None else views.tokens.get(token, type)
    ceilings = [
        at + seconds
        for seconds in (settings.authorization_cache_max_seconds, table.get("cache_expiry_seconds"))
        if seconds is not None
    ]
    if state is not None:
        assert views is not None
        status = _registered_status(state, views, at, current, limit)
        group = state.group
        if state.expiry is not None and _instant(state.expiry) > at:
            ceilings.append(_instant(state.expiry))
    else:
        status = _seeded(token, table, views, settings)
        group = table.get("groups", {}).get(token)
    return Decision(
        status=status,
        expiry=rfc3339(min(ceilings)) if ceilings else None,
        group=group,
    )


def id_tag_info(
    id_tag: str,
    settings: Settings,
    at: float,
    views: Views | None = None,
    *,
    current: tuple[str, int | str] | None = None,
    limit: bool = True,
) -> dict[str, Any]:
    """The 1.6 ``idTagInfo`` for ``id_tag`` (``Unknown`` is spelled ``Invalid``: 1.6 has no
    ``Unknown``); the arguments are :func:`decide`'s."""
    decision = decide(id_tag, settings, at, views, current=current, limit=limit)
    status = "Invalid" if decision.status == "Unknown" else decision.status
    info: dict[str, Any] = {"status": status}
    if decision.expiry is not None:
        info["expiryDate"] = decision.expiry
    if decision.group is not None:
        info["parentIdTag"] = decision.group
    return info


def id_token_info(
    id_token: Any,
    settings: Settings,
    at: float,
    views: Views | None = None,
    *,
    current: tuple[str, int | str] | None = None,
) -> dict[str, Any]:
    """The 2.0.1 ``idTokenInfo`` for a typed ``IdTokenType``; the group is sent with its own
    registered type when it is itself a registered token, else as ``Central``."""
    if id_token.type == "NoAuthorization":
        return {"status": "Accepted"}
    decision = decide(id_token.id_token, settings, at, views, type=id_token.type, current=current)
    info: dict[str, Any] = {"status": decision.status}
    if decision.expiry is not None:
        info["cacheExpiryDateTime"] = decision.expiry
    if decision.group is not None:
        group = None if views is None else views.tokens.get(decision.group)
        group_type = "Central" if group is None else group.type
        info["groupIdToken"] = {"idToken": decision.group, "type": group_type}
    return info


def token_answer(
    call: InboundCall, settings: Settings, views: Views | None = None
) -> dict[str, Any]:
    """The token part of the answer to a CALL carrying an optional token (Authorize, 1.6
    StopTransaction, 2.0.1 TransactionEvent): ``idTagInfo`` or ``idTokenInfo``; empty when the
    CALL carries none. A 1.6 stop is never refused for the concurrent-use limit; a
    TransactionEvent's own transaction does not count against it."""
    if call.protocol == OCPP16:
        id_tag = call.payload.id_tag
        if id_tag is None:
            return {}
        limit = call.action != "StopTransaction"
        return {"idTagInfo": id_tag_info(id_tag, settings, call.at, views, limit=limit)}
    id_token = call.payload.id_token
    if id_token is None:
        return {}
    info = getattr(call.payload, "transaction_info", None)
    current = None if info is None else (call.station, info.transaction_id)
    return {"idTokenInfo": id_token_info(id_token, settings, call.at, views, current=current)}


@hookimpl
@answers("Authorize")
def chargeledger_answer_call(call: InboundCall, views: Views, settings: Settings) -> list[Command]:
    return [Reply(token_answer(call, settings, views))]


@hookimpl
@reacts_to(TokenRegistered)
def chargeledger_react(
    recorded: Recorded, exchange: Exchange | None, views: Views, settings: Settings
) -> list[Command]:
    """With ``blocked_while_charging = "remote_stop"``: stop the running transactions of a
    token just registered Blocked, Expired or Invalid (or with its expiry already past), on
    the stations connected to this node."""
    event = recorded.event
    if settings.blocked_while_charging != "remote_stop" or not isinstance(event, TokenRegistered):
        return []
    state = views.tokens.get(event.id_token, event.type)
    if state is None or _registered_status(state, views, event.at, None, False) == "Accepted":
        return []
    return [
        SendCall(
            transaction.station,
            "RemoteStopTransaction" if is_v16(transaction.protocol) else "RequestStopTransaction",
            {"transactionId": transaction.transaction_id},
        )
        for transaction in running_transactions(views, state)
        if _connected_here(views, transaction.station, settings)
    ]


def _connected_here(views: Views, station: str, settings: Settings) -> bool:
    """Whether the station's session is on this node: every node reacts to the same event,
    and only the one holding the session sends (the others would record a request refused
    as offline)."""
    state = views.stations.get(station)
    return state is not None and state.connected and state.node == settings.node
