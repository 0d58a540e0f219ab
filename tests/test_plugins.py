"""The plugin host and the worked example of docs/plugins.md, end to end."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from chargeledger.core.plugin_host import BUILTIN_PLUGINS, PluginHost
from chargeledger.core.settings import Settings
from tests.harness import RunningServer, chargeledger_cli, raw_station, running_server
from tests.polling import eventually
from tests.test_e2e_v16 import BOOT, connect

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"


@pytest.fixture
def example_on_path() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))
        sys.modules.pop("acme_block", None)


def test_docs_show_the_example_as_it_is() -> None:
    page = (REPO / "docs" / "plugins.md").read_text()
    example = (EXAMPLES / "acme_block.py").read_text()
    assert f"```python\n{example}```" in page, "docs/plugins.md and acme_block.py differ"


def test_builtins_are_enabled_and_can_be_disabled() -> None:
    assert PluginHost(Settings()).enabled == list(BUILTIN_PLUGINS)
    host = PluginHost(Settings(disabled_plugins=["transactions"]))
    assert "transactions" not in host.enabled


def test_unknown_disabled_plugin_is_refused() -> None:
    with pytest.raises(ValueError, match="typo"):
        PluginHost(Settings(disabled_plugins=["typo"]))


def test_missing_plugin_module_is_refused() -> None:
    with pytest.raises(ImportError):
        PluginHost(Settings(plugin_modules=["no_such_module_here"]))


def test_worked_example_end_to_end(tmp_path: Path, example_on_path: None) -> None:
    settings = Settings(
        port=0, store=f"sqlite:///{tmp_path / 'p.db'}", plugin_modules=["acme_block"]
    )

    async def scenario(server: RunningServer) -> dict[str, Any]:
        cp, ws, task = await connect(server, "ACME-1")
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="ACME"))
            ours = await cp.call(call.DataTransfer(vendor_id="com.acme.display", data="hello"))
            theirs = await cp.call(call.DataTransfer(vendor_id="org.other"))
            assert server.csms is not None
            views = server.csms.views

            def configured() -> Any:  # the station answers our GetConfiguration asynchronously
                state = views.stations.get("ACME-1")
                return state if state is not None and state.configuration else None

            state = await eventually(configured, what="ACME-1's reported configuration")
            return {"ours": ours.status, "theirs": theirs.status, "state": state}
        finally:
            task.cancel()
            await ws.close()

    with running_server(settings) as server:
        assert "acme_block" in server.csms.gateway.plugins.enabled  # type: ignore[union-attr]
        result = asyncio.run(scenario(server))
    assert result["ours"] == "Accepted"
    assert result["theirs"] == "UnknownVendorId"
    assert "HeartbeatInterval" in result["state"].configuration


def test_disabled_block_is_not_asked(tmp_path: Path) -> None:
    settings = Settings(
        port=0, store=f"sqlite:///{tmp_path / 'd.db'}", disabled_plugins=["data_transfer"]
    )

    async def scenario(server: RunningServer) -> Any:
        cp, ws, task = await connect(server, "CP-D")
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            return await cp.call(call.DataTransfer(vendor_id="x"), suppress=False)
        finally:
            task.cancel()
            await ws.close()

    from ocpp.exceptions import NotSupportedError

    with running_server(settings) as server, pytest.raises(NotSupportedError):
        asyncio.run(scenario(server))


BROKEN_BLOCK = """
from chargeledger.core.hookspec import hookimpl


@hookimpl(tryfirst=True)
def chargeledger_answer_call(call):
    if call.action == "Authorize":
        raise RuntimeError("bug in a platform team's block")
    return None


@hookimpl
def chargeledger_react(recorded):
    raise RuntimeError("bug in a reaction")
"""


def test_a_failing_plugin_gets_internal_error_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_block.py").write_text(BROKEN_BLOCK)
    monkeypatch.syspath_prepend(str(tmp_path))
    store = f"sqlite:///{tmp_path / 'b.db'}"
    settings = Settings(port=0, store=store, plugin_modules=["broken_block"])

    async def scenario(server: RunningServer) -> list[Any]:
        ws = await raw_station(server.url, "BROKEN", ["ocpp1.6"])
        try:
            await ws.send(BOOT)
            answers = [json.loads(await ws.recv())]
            await ws.send('[2,"a","Authorize",{"idTag":"T"}]')
            answers.append(json.loads(await ws.recv()))
            await ws.send('[2,"h","Heartbeat",{}]')
            answers.append(json.loads(await ws.recv()))
            return answers
        finally:
            await ws.close()

    with running_server(settings) as server:
        boot, authorize, heartbeat = asyncio.run(scenario(server))
    sys.modules.pop("broken_block", None)
    assert boot[2]["status"] == "Accepted", "a failing reaction does not stop the session"
    assert authorize[:3] == [4, "a", "InternalError"]
    assert heartbeat[0] == 3
    events = chargeledger_cli("events", store=store)
    frames = [e["event"]["text"] for e in events if e["kind"] == "FrameLogged"]
    assert '[2,"a","Authorize",{"idTag":"T"}]' in frames
