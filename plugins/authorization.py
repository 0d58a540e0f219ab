"""Authorization (1.6 Core Authorize / 2.0.1 C): which tokens may charge, in either version.

One decision per token, spelled per version: 1.6 ``idTagInfo`` (``status``, ``expiryDate``,
``parentIdTag``), 2.0.1 ``idTokenInfo`` (``status``, ``cacheExpiryDateTime``,
``groupIdToken``). Tokens are matched by value, whatever their 2.0.1 type; a 2.0.1
``NoAuthorization`` token (the station charges without asking anyone) is always Accepted.

Options (``[plugins.authorization]``): ``blocked`` (tokens answered Blocked), ``expired``
(answered Expired), ``known`` (when non-empty, only these tokens are Accepted; others are
Invalid in 1.6, Unknown in 2.0.1), ``groups`` (token -> group id: 1.6 ``parentIdTag``, 2.0.1
``groupIdToken`` of type Central), ``cache_expiry_seconds`` (how long the station may cache an
answer: the expiry sent is the CALL's time plus this). With no options every token is Accepted,
which is what a CSMS without a token database does.
"""

from __future__ import annotations

from typing import Any

import msgspec

from chargeledger.core.plugin import (
    OCPP16,
    Command,
    InboundCall,
    Reply,
    Settings,
    answers,
    hookimpl,
    plugin_options,
    rfc3339,
)

__all__ = [
    "Decision",
    "chargeledger_answer_call",
    "decide",
    "id_tag_info",
    "id_token_info",
    "token_answer",
]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What the configured lists say of a token, whatever the protocol version."""

    status: str
    """``Accepted``, ``Blocked``, ``Expired``, or ``Unknown`` (not in a non-empty ``known``)."""
    expiry: str | None
    """Until when the station may cache the answer (RFC 3339), ``None`` for no limit."""
    group: str | None


def decide(token: str, settings: Settings, at: float) -> Decision:
    """The decision for ``token`` under the configured lists, at time ``at``."""
    table = plugin_options(settings, "authorization")
    known = table.get("known", [])
    if token in table.get("blocked", []):
        status = "Blocked"
    elif token in table.get("expired", []):
        status = "Expired"
    elif known and token not in known:
        status = "Unknown"
    else:
        status = "Accepted"
    seconds = table.get("cache_expiry_seconds")
    return Decision(
        status=status,
        expiry=None if seconds is None else rfc3339(at + seconds),
        group=table.get("groups", {}).get(token),
    )


def id_tag_info(id_tag: str, settings: Settings, at: float) -> dict[str, Any]:
    """The 1.6 ``idTagInfo`` for ``id_tag`` (an unknown tag is ``Invalid``: 1.6 has no
    ``Unknown``)."""
    decision = decide(id_tag, settings, at)
    status = "Invalid" if decision.status == "Unknown" else decision.status
    info: dict[str, Any] = {"status": status}
    if decision.expiry is not None:
        info["expiryDate"] = decision.expiry
    if decision.group is not None:
        info["parentIdTag"] = decision.group
    return info


def id_token_info(id_token: Any, settings: Settings, at: float) -> dict[str, Any]:
    """The 2.0.1 ``idTokenInfo`` for a typed ``IdTokenType``."""
    if id_token.type == "NoAuthorization":
        return {"status": "Accepted"}
    decision = decide(id_token.id_token, settings, at)
    info: dict[str, Any] = {"status": decision.status}
    if decision.expiry is not None:
        info["cacheExpiryDateTime"] = decision.expiry
    if decision.group is not None:
        info["groupIdToken"] = {"idToken": decision.group, "type": "Central"}
    return info


def token_answer(call: InboundCall, settings: Settings) -> dict[str, Any]:
    """The token part of the answer to a CALL carrying an optional token (Authorize, 1.6
    StopTransaction, 2.0.1 TransactionEvent): ``idTagInfo`` or ``idTokenInfo``; empty when the
    CALL carries none."""
    if call.protocol == OCPP16:
        id_tag = call.payload.id_tag
        return {} if id_tag is None else {"idTagInfo": id_tag_info(id_tag, settings, call.at)}
    id_token = call.payload.id_token
    return {} if id_token is None else {"idTokenInfo": id_token_info(id_token, settings, call.at)}


@hookimpl
@answers("Authorize")
def chargeledger_answer_call(call: InboundCall, settings: Settings) -> list[Command]:
    return [Reply(token_answer(call, settings))]
