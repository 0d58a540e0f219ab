"""The plugin host and the worked example of docs/plugins.md, end to end."""

from __future__ import annotations

import ast
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from chargeledger.core.plugin import (
    Command,
    ErrorAnswer,
    Exchange,
    FrameLogged,
    InboundCall,
    Recorded,
    Reply,
    ReplyError,
    SessionOpened,
    Settings,
    Views,
    answered_actions,
    answers,
    hookimpl,
)
from chargeledger.core.plugin_host import BUILTIN_PLUGINS, PluginHost
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


def test_the_example_imports_only_the_public_contract() -> None:
    tree = ast.parse((EXAMPLES / "acme_block.py").read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__"
    }
    assert imported == {"chargeledger.core.plugin"}
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Import)]


def test_worked_example_end_to_end(tmp_path: Path, example_on_path: None) -> None:
    store = f"sqlite:///{tmp_path / 'p.db'}"
    settings = Settings(
        port=0,
        store=store,
        plugin_modules=["acme_block"],
        plugins={"acme_block": {"heartbeat_interval": 120}},
    )

    async def scenario(server: RunningServer) -> dict[str, Any]:
        cp, ws, task = await connect(server, "ACME-1")
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="ACME"))
            ours = await cp.call(call.DataTransfer(vendor_id="com.acme.display", data="hello"))
            theirs = await cp.call(call.DataTransfer(vendor_id="org.other"))
            assert server.csms is not None
            views = server.csms.views

            def configured() -> Any:  # the station answers our CALLs asynchronously
                state = views.stations.get("ACME-1")
                held = state.configuration.get("HeartbeatInterval") if state else None
                return state if held is not None and held.value == "120" else None

            state = await eventually(configured, what="ACME-1's HeartbeatInterval set to 120")
            return {"ours": ours, "theirs": theirs.status, "state": state, "station": cp}
        finally:
            task.cancel()
            await ws.close()

    with running_server(settings) as server:
        assert server.csms is not None
        plugins = server.csms.gateway.plugins
        assert "acme_block" in plugins.enabled
        assert plugins.answerers("DataTransfer") == [
            "acme_block:chargeledger_answer_call",
            "plug_and_charge:answer_data_transfer",  # its own vendor id only
            "data_transfer:chargeledger_answer_call",
        ]
        assert not [name for name in plugins.answerers("Heartbeat") if "acme" in name]
        result = asyncio.run(scenario(server))
    assert (result["ours"].status, result["ours"].data) == ("Accepted", "shown")
    assert result["theirs"] == "UnknownVendorId"
    assert result["state"].configuration["HeartbeatInterval"].value == "120"
    assert result["station"].configuration["HeartbeatInterval"] == "120"
    frames = [
        e["event"]
        for e in chargeledger_cli("events", store=store)
        if e["kind"] == "FrameLogged" and e["event"]["direction"] == "out"
    ]
    sent = [json.loads(f["text"])[2] for f in frames if json.loads(f["text"])[0] == 2]
    assert sent == ["GetConfiguration", "ChangeConfiguration"]


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


class _Default:
    @hookimpl(trylast=True)
    def chargeledger_answer_call(self, call: InboundCall) -> list[Command]:
        return [Reply({"by": "default"})]


class _Vendor:
    def __init__(self) -> None:
        self.asked: list[str] = []

    @hookimpl
    @answers("DataTransfer")
    def chargeledger_answer_call(self, call: InboundCall) -> list[Command] | None:
        self.asked.append(call.action)
        return [Reply({"by": "vendor"})] if call.payload == "ours" else None

    @hookimpl(tryfirst=True, specname="chargeledger_answer_call")
    @answers("Heartbeat", "DataTransfer")
    def first(self, call: InboundCall) -> list[Command] | None:
        self.asked.append(f"first:{call.action}")
        return [Reply({"by": "first"})] if call.action == "Heartbeat" else None


class _Gate:
    @hookimpl
    def chargeledger_admit_call(self, call: InboundCall) -> ReplyError | None:
        return ReplyError("SecurityError", "no") if call.station == "BANNED" else None


def _inbound(action: str, payload: Any = None, station: str = "CP") -> InboundCall:
    return InboundCall(
        station=station,
        session="s",
        protocol="ocpp1.6",
        message_id="m",
        action=action,
        payload=payload,
        at=0.0,
    )


def test_declared_actions_route_calls_and_keep_pluggy_order() -> None:
    vendor = _Vendor()
    host = PluginHost(
        Settings(), plugins={"default": _Default(), "vendor": vendor, "gate": _Gate()}
    )
    views = Views()
    assert host.answerers("DataTransfer") == [
        "vendor:first",
        "vendor:chargeledger_answer_call",
        "default:chargeledger_answer_call",
    ]
    assert host.answerers("Authorize") == ["default:chargeledger_answer_call"]

    def by(call: InboundCall) -> Any:
        [answer] = host.answer_call(call, views) or []
        return answer.payload["by"] if isinstance(answer, Reply) else answer

    assert by(_inbound("DataTransfer", "ours")) == "vendor"
    assert by(_inbound("DataTransfer", "theirs")) == "default", "trylast default"
    assert by(_inbound("Heartbeat")) == "first", "tryfirst wins: firstresult"
    assert by(_inbound("Authorize")) == "default"
    assert vendor.asked == [
        "first:DataTransfer",
        "DataTransfer",
        "first:DataTransfer",
        "DataTransfer",
        "first:Heartbeat",
    ], "never asked about an action it did not declare"
    assert by(_inbound("Heartbeat", station="BANNED")) == ReplyError("SecurityError", "no")
    assert vendor.asked[-1] == "first:Heartbeat", "a refused CALL reaches no answerer"


def test_answers_needs_an_action() -> None:
    with pytest.raises(ValueError):
        answers()


def test_react_gets_the_exchange_the_event_completed() -> None:
    seen: list[Exchange | None] = []

    class Watcher:
        @hookimpl
        def chargeledger_react(self, exchange: Exchange | None) -> list[Command]:
            seen.append(exchange)
            return []

    host = PluginHost(Settings(), plugins={"watcher": Watcher()})
    views = Views()
    opened = SessionOpened(station="CP", session="s", at=0.0, protocol="ocpp1.6")
    frames = [
        (opened, None),
        ('[2,"c","GetConfiguration",{}]', "out"),
        ('[3,"c",{"configurationKey":[]}]', "in"),
        ('[2,"r","Reset",{"type":"Soft"}]', "out"),
        ('[4,"r","NotSupported","no",{"why":1}]', "in"),
        ('[3,"r",{"status":"Accepted"}]', "in"),  # answers nothing any more
    ]
    for position, (item, direction) in enumerate(frames, start=1):
        event = (
            item
            if direction is None
            else FrameLogged(
                station="CP",
                session="s",
                at=float(position),
                direction="in" if direction == "in" else "out",
                text=str(item),
            )
        )
        recorded = Recorded(position, "s", position, event)  # type: ignore[arg-type]
        views.apply(recorded)
        host.react(recorded, views)
    assert seen[:2] == [None, None] and seen[3] is None and seen[5] is None
    exchange = seen[2]
    assert exchange is not None
    assert (exchange.origin, exchange.action, exchange.response, exchange.error) == (
        "out",
        "GetConfiguration",
        {"configurationKey": []},
        None,
    )
    refused = seen[4]
    assert refused is not None and refused.action == "Reset" and refused.response is None
    assert refused.error == ErrorAnswer("NotSupported", "no", {"why": 1})
    assert views.stations.get("CP") is not None


def test_builtin_blocks_declare_their_actions_and_import_no_private_module() -> None:
    host = PluginHost(Settings())
    for impl in host.manager.hook.chargeledger_answer_call.get_hookimpls():
        assert answered_actions(impl.function), f"{impl.plugin_name} answers every action"
    for path in sorted((REPO / "plugins").glob("*.py")):
        assert not path.name.startswith("_") or path.name == "__init__.py", path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                private = [part for part in node.module.split(".") if part.startswith("_")]
                assert private in ([], ["__future__"]), f"{path.name} imports {node.module}"
