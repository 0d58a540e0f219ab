"""The Litestar application: routes, authentication, problem details and the OpenAPI document."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsPlugin

from chargeledger.core.errors import StoreUnavailable
from chargeledger.core.http import (
    billing,
    commands,
    firmware,
    health,
    local_lists,
    log,
    reservations,
    security,
    stations,
    tokens,
)
from chargeledger.core.http.auth import BearerAuth
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import http_problem, internal_problem, store_problem
from chargeledger.core.settings import ApiKey

__all__ = ["OPENAPI_PATH", "create_app"]

OPENAPI_PATH = "/api/schema"
"""Interactive documentation; the OpenAPI document is ``/api/schema/openapi.json``."""

ROUTES = [
    *stations.ROUTES,
    *commands.ROUTES,
    *log.ROUTES,
    *billing.ROUTES,
    *health.ROUTES,
    *security.ROUTES,
    *local_lists.ROUTES,
    *reservations.ROUTES,
    *tokens.ROUTES,
    *firmware.ROUTES,
]


def create_app(ctx: ApiContext, keys: list[ApiKey]) -> Litestar:
    """The API of the server behind ``ctx``, authenticating with ``keys`` (none: every
    caller is ``local``/``admin``, for loopback use)."""
    registry = health.metrics_registry(ctx)
    return Litestar(
        route_handlers=ROUTES,
        dependencies={
            "ctx": Provide(lambda: ctx, use_cache=True, sync_to_thread=False),
            "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
        },
        middleware=[DefineMiddleware(BearerAuth, keys=keys, exclude=[f"^{OPENAPI_PATH}"])],
        plugins=[
            ProblemDetailsPlugin(
                ProblemDetailsConfig(
                    exception_to_problem_detail_map={
                        HTTPException: http_problem,
                        StoreUnavailable: store_problem,
                        Exception: internal_problem,
                    }
                )
            )
        ],
        openapi_config=OpenAPIConfig(
            title="ChargeLedger API",
            version="1",
            description="Operator and billing API of a ChargeLedger CSMS (see docs/api.md).",
            path=OPENAPI_PATH,
            render_plugins=[ScalarRenderPlugin(path="/")],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key (chargeledger api-key)",
                    )
                }
            ),
            security=[{"bearer": []}],
            use_handler_docstrings=True,
        ),
        logging_config=None,
        debug=False,
    )
