"""Test harness: a real ChargeLedger server in a background thread, driven from plain tests.

The independent OCPP client (the ``ocpp`` package) runs on asyncio, the server on trio; each
gets its own thread and event loop, and they talk over real WebSockets on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import trio
import websockets

from chargeledger.core.api import CentralSystem
from chargeledger.core.server import run_server
from chargeledger.core.settings import Settings

__all__ = [
    "CallErrorsRaise",
    "RunningServer",
    "assert_current_time",
    "chargeledger_cli",
    "raw_station",
    "running_server",
    "serve_process",
]

T = TypeVar("T")


class RunningServer:
    """A server running ``run_server(settings)`` on its own thread with its own trio loop."""

    def __init__(self, settings: Settings, web: Sequence[Any] = ()) -> None:
        self.settings = settings
        self.web = web
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self.csms: CentralSystem | None = None

    def _main(self) -> None:
        async def serve() -> None:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self._token = trio.lowlevel.current_trio_token()
                self.csms = await nursery.start(partial(run_server, self.settings, web=self.web))
                self._ready.set()

        try:
            trio.run(serve)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> RunningServer:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.csms is not None, "server did not start in time"
        return self

    def stop(self) -> None:
        """Cancel the server (as SIGINT does) and wait until it has flushed and closed."""
        if self._token is not None and self._scope is not None:
            scope = self._scope
            with suppress(trio.RunFinishedError):
                self._token.run_sync_soon(scope.cancel)
        self._thread.join(30)
        assert not self._thread.is_alive(), "server did not stop"
        if self._error is not None:
            raise self._error

    @property
    def url(self) -> str:
        assert self.csms is not None
        return f"ws://127.0.0.1:{self.csms.port}/ocpp"

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the async ``fn(*args)`` on the server's trio loop and return its result."""
        assert self._token is not None
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    async def arun(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """:meth:`run` for asyncio code: does not block the client's event loop."""
        return await asyncio.to_thread(self.run, fn, *args)


@contextmanager
def running_server(settings: Settings, web: Sequence[Any] = ()) -> Iterator[RunningServer]:
    """A started :class:`RunningServer` (serving the route handlers ``web`` beside the API),
    stopped on leaving."""
    server = RunningServer(settings, web).start()
    try:
        yield server
    finally:
        server.stop()


async def raw_station(
    url: str, station: str, subprotocols: list[str] | None = None
) -> websockets.ClientConnection:
    """A bare WebSocket to the server, for frames no real client would send."""
    return await websockets.connect(
        f"{url}/{station}",
        subprotocols=None
        if subprotocols is None
        else [websockets.Subprotocol(p) for p in subprotocols],
        ping_interval=None,
    )


def serve_process(
    store: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """``chargeledger serve --port 0`` as its own process on ``store`` (from ``env``'s
    ``CHARGELEDGER_STORE`` instead when ``env`` is given), and the port it listens on, read
    from its log (stderr, left open for the caller). Raises AssertionError, killing it, when
    it does not say where it listens within 30 s."""
    process = subprocess.Popen(
        [sys.executable, "-m", "chargeledger.core.cli", "serve", "--port", "0"]
        + ([] if env else ["--store", store]),
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"listening on ws://[\d.]+:(\d+)/", line)
        if found:
            return process, int(found.group(1))
    process.kill()
    raise AssertionError("server did not log where it listens")


def chargeledger_cli(*args: str, store: str) -> list[dict[str, Any]]:
    """Run ``chargeledger ARGS --store STORE --json`` as a separate process; its JSON lines."""
    completed = subprocess.run(
        [sys.executable, "-m", "chargeledger.core.cli", *args, "--store", store, "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=60,
    )
    return [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]


class CallErrorsRaise:
    """Mixin for the ``ocpp`` package's ``ChargePoint``: ``call()`` raises the CALLERROR it
    receives (as an ``ocpp.exceptions.OCPPError``) instead of returning ``None``, its default
    (``suppress=True``) which lets a wrong answer pass a test that never looks at it."""

    async def call(
        self,
        payload: Any,
        suppress: bool = False,
        unique_id: str | None = None,
        skip_schema_validation: bool = False,
    ) -> Any:
        return await super().call(  # type: ignore[misc]
            payload,
            suppress=suppress,
            unique_id=unique_id,
            skip_schema_validation=skip_schema_validation,
        )


def assert_current_time(text: str, since: float, slack: float = 1.0) -> None:
    """``text`` is an RFC 3339 UTC time (``...Z``) between ``since`` and now (give or take
    ``slack`` seconds): the CSMS's clock, as a ``currentTime`` answer must carry it."""
    assert text.endswith("Z"), f"{text!r} is not UTC"
    at = datetime.fromisoformat(text).timestamp()
    assert since - slack <= at <= time.time() + slack, f"{text!r} is not the current time"
