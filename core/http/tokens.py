"""ID-token registry routes: list, read, register (one or many), remove; changes need the
``operator`` role and go through the one door, recorded with the caller's key name
(docs/authorization.md)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from chargeledger.core.http.auth import Caller, requires
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import bad_request, not_found, responses
from chargeledger.core.tokens import TokenFields, TokenRequest
from chargeledger.projections import TokenState

__all__ = ["ROUTES"]


async def _register(
    ctx: ApiContext, requests: list[TokenRequest], caller: Caller
) -> list[TokenState]:
    try:
        return await ctx.csms.register_tokens(requests, caller=caller)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


@get("/api/tokens", guards=[requires("read")], responses=responses(401, 403), tags=["tokens"])
async def list_tokens(
    ctx: NamedDependency[ApiContext], group: FromQuery[str | None] = None
) -> list[TokenState]:
    """Every registered ID token, sorted by ``id_token``; ``group``: only that group's."""
    tokens = ctx.csms.views.tokens
    if group is not None:
        return tokens.groups().get(group, [])
    return tokens.all()


@get(
    "/api/tokens/{id_token:str}",
    guards=[requires("read")],
    responses=responses(401, 403, 404),
    tags=["tokens"],
)
async def token_detail(
    ctx: NamedDependency[ApiContext], id_token: FromPath[str], type: FromQuery[str | None] = None
) -> TokenState:
    """The token's registration (matched case-insensitively); without ``type``, of any type
    (the newest registration), as a 1.6 ``idTag`` is matched. 404 when not registered."""
    state = ctx.csms.views.tokens.get(id_token, type)
    if state is None:
        raise not_found(f"ID token {id_token!r} is not registered")
    return state


@put(
    "/api/tokens/{id_token:str}",
    guards=[requires("operator")],
    responses=responses(400, 401, 403, 503),
    tags=["tokens"],
    status_code=200,
)
async def register_token(
    ctx: NamedDependency[ApiContext],
    id_token: FromPath[str],
    data: JSONBody[TokenFields],
    request: Request[Caller, Any, Any],
) -> TokenState:
    """Register the token, or update it: the body is the whole registration (a field left
    out takes its default). Recorded as ``TokenRegistered`` with the operator's key name."""
    token = TokenRequest(id_token=id_token, **msgspec.structs.asdict(data))
    (state,) = await _register(ctx, [token], request.user)
    return state


@post(
    "/api/tokens",
    guards=[requires("operator")],
    responses=responses(400, 401, 403, 503),
    tags=["tokens"],
    status_code=200,
)
async def register_tokens(
    ctx: NamedDependency[ApiContext],
    data: JSONBody[list[TokenRequest]],
    request: Request[Caller, Any, Any],
) -> list[TokenState]:
    """Register many tokens at once (``chargeledger tokens import``): all recorded in one
    commit, or none when any is invalid (400 naming it)."""
    return await _register(ctx, data, request.user)


@delete(
    "/api/tokens/{id_token:str}",
    guards=[requires("operator")],
    responses=responses(401, 403, 404, 503),
    tags=["tokens"],
)
async def remove_token(
    ctx: NamedDependency[ApiContext],
    id_token: FromPath[str],
    request: Request[Caller, Any, Any],
    type: FromQuery[str | None] = None,
) -> None:
    """Remove the token's registration of ``type`` (omitted: of every type), recorded as
    ``TokenRemoved``; 404 when none is registered."""
    if not await ctx.csms.remove_token(id_token, type, caller=request.user):
        raise not_found(f"ID token {id_token!r} is not registered")


ROUTES = [list_tokens, token_detail, register_token, register_tokens, remove_token]
