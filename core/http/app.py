"""The Litestar application: routes, authentication, problem details and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import swagger_ui
from litestar import Litestar
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from chargeledger.core.errors import StoreUnavailable
from chargeledger.core.http import (
    billing,
    commands,
    device,
    diagnostics,
    firmware,
    health,
    local_lists,
    log,
    plug_and_charge,
    reservations,
    security,
    sites,
    smart_charging,
    stations,
    tariffs,
    tokens,
)
from chargeledger.core.http.auth import BearerAuth
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.problems import http_problem, internal_problem, store_problem
from chargeledger.core.settings import ApiKey

__all__ = ["DOCS_ASSETS", "OPENAPI_PATH", "create_app"]

OPENAPI_PATH = "/api/schema"
"""Interactive documentation; the OpenAPI document is ``/api/schema/openapi.json``."""

DOCS_ASSETS = f"{OPENAPI_PATH}/assets"
"""Swagger UI's scripts, style and icon, served from the ``swagger-ui-py`` package: the
interactive documentation loads nothing from another host (docs/console.md says why)."""

_SWAGGER_UI = Path(swagger_ui.__file__).parent / "static"

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
    *device.ROUTES,
    *diagnostics.ROUTES,
    *tariffs.ROUTES,
    *smart_charging.ROUTES,
    *sites.ROUTES,
    *plug_and_charge.ROUTES,
    *firmware.ROUTES,
]


def create_app(
    ctx: ApiContext, keys: list[ApiKey], extra: Sequence[ControllerRouterHandler] = ()
) -> Litestar:
    """The API of the server behind ``ctx``, authenticating with ``keys`` (none: every
    caller is ``local``/``admin``, for loopback use), with the route handlers of ``extra``
    (the tools built on the API: the operator console, ``chargeledger.core.console``)."""
    registry = health.metrics_registry(ctx)
    docs_assets = create_static_files_router(
        DOCS_ASSETS, [_SWAGGER_UI], name="docs-assets", opt={"public": True}
    )
    return Litestar(
        route_handlers=[*ROUTES, docs_assets, *extra],
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
            render_plugins=[
                SwaggerRenderPlugin(
                    path="/",
                    js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                    css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                    standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                    favicon=f"<link rel='icon' href='{DOCS_ASSETS}/favicon-32x32.png'>",
                )
            ],
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
