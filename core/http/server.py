"""Serving the API: Hypercorn's trio worker inside the server's own trio run."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from chargeledger.core.api import CentralSystem
from chargeledger.core.http.app import OPENAPI_PATH, create_app
from chargeledger.core.http.context import ApiContext
from chargeledger.core.settings import Settings

__all__ = ["serve_api"]

log = logging.getLogger("chargeledger.http")


async def serve_api(
    csms: CentralSystem,
    settings: Settings,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the HTTP API on ``settings.api_host:api_port`` until cancelled;
    ``task_status`` gets the bound port. Raises ``OSError`` when it cannot bind."""
    assert settings.api_port is not None
    config = Config()
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    config.bind = [f"{host}:{settings.api_port}"]
    config.errorlog = log
    config.accesslog = None
    app = create_app(ApiContext(csms), settings.api_keys)
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
