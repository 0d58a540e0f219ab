"""Serving the API: Hypercorn's trio worker inside the server's own trio run."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from litestar.types import ControllerRouterHandler

from chargeledger.core.api import CentralSystem
from chargeledger.core.http.app import OPENAPI_PATH, create_app
from chargeledger.core.http.context import ApiContext
from chargeledger.core.settings import Settings

__all__ = ["CloseUnlessBodyRead", "serve_api"]

log = logging.getLogger("chargeledger.http")


async def serve_api(
    csms: CentralSystem,
    settings: Settings,
    extra: Sequence[ControllerRouterHandler] = (),
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the HTTP API, with the route handlers ``extra``, on
    ``settings.api_host:api_port`` until cancelled; ``task_status`` gets the bound port.
    Raises ``OSError`` when it cannot bind."""
    assert settings.api_port is not None
    config = Config()
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    config.bind = [f"{host}:{settings.api_port}"]
    config.errorlog = log
    config.accesslog = None
    app = CloseUnlessBodyRead(create_app(ApiContext(csms), settings.api_keys, extra))
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serve, app, config)
        port = urlsplit(binds[0]).port
        assert port is not None
        log.info(
            "HTTP API on http://%s:%d/ (docs %s, %s)",
            host,
            port,
            OPENAPI_PATH,
            f"{len(settings.api_keys)} key(s)" if settings.api_keys else "no keys: loopback only",
        )
        task_status.started(port)


class CloseUnlessBodyRead:
    """ASGI middleware: a response that starts before the app has read the whole request body
    says ``Connection: close``.

    Why: Hypercorn (0.18, HTTP/1.1) closes the connection after such a response (an
    authentication failure answered from the headers while the body is still on its way) but
    does not say so, so the client keeps the connection for its next request, which then fails
    (httpx: ``RemoteProtocolError: Server disconnected without sending a response``; seen as a
    flaky ``test_authentication_and_roles``, see ``docs/testing.md``). Announced, the close
    makes the client open a fresh connection instead. Requests without a body and responses
    sent after the body was read keep their connection.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self._app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or not _has_body(scope["headers"]):
            await self._app(scope, receive, send)
            return
        body_read = False

        async def tracking_receive() -> ASGIReceiveEvent:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def announcing_send(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and not body_read:
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, tracking_receive, announcing_send)


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these (lower-case) headers carries a body."""
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
