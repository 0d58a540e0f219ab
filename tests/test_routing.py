"""Routing: every projection's ``CONCERNS`` and every react hook's ``@reacts_to`` cover what
it reads. A log is folded once into views that route each event only to the projections it
concerns and once into views that fold every event into every projection; every piece of
state of both must be equal. Along the routed fold, each plugin is asked as the host routes
it and as pluggy would call every plugin; both must return the same commands."""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.core.events import (
    CommandRequested,
    Direction,
    FrameLogged,
    LocalListDefined,
    LocalListPushRequested,
    Recorded,
    SessionOpened,
    SiteDefined,
    TimerFired,
    TimerStarted,
    TokenRegistered,
)
from chargeledger.core.plugin import reacted_kinds, reacts_to
from chargeledger.core.plugin_host import PluginHost
from chargeledger.core.settings import Settings
from chargeledger.projections import Views
from chargeledger.projections.exchanges import kind_of, routed_to
from tests import test_diagnostics_projections, test_firmware, test_projections

__all__: list[str] = []

_SKIPPED = frozenset({"_folds", "_routes", "_routed"})
"""The routing itself, which differs by construction."""


def state_of(value: Any, seen: frozenset[int] = frozenset()) -> Any:
    """Everything ``value`` holds, as comparable builtins (functions left out)."""
    if value is None or isinstance(value, str | int | float | Decimal | bytes):
        return value
    if id(value) in seen:
        return "<cycle>"
    seen = seen | {id(value)}
    if isinstance(value, msgspec.Struct):
        fields = {f: state_of(getattr(value, f), seen) for f in value.__struct_fields__}
        return (type(value).__name__, fields)
    if isinstance(value, dict):
        return {key: state_of(item, seen) for key, item in value.items()}
    if isinstance(value, list | tuple | deque):
        return [state_of(item, seen) for item in value]
    if isinstance(value, set | frozenset):
        return value
    if (callable(value) and not hasattr(value, "__dict__")) or isinstance(value, type):
        return None
    names = list(getattr(value, "__dict__", {})) + list(getattr(type(value), "__slots__", ()))
    if not names:
        return repr(value)
    return (
        type(value).__name__,
        {
            name: state_of(getattr(value, name), seen)
            for name in names
            if name not in _SKIPPED and not callable(getattr(value, name))
        },
    )


def _settings() -> Settings:
    """Settings under which the react hooks' conditional branches run."""
    return msgspec.convert(
        {
            "blocked_while_charging": "remote_stop",
            "plugins": {
                "provisioning": {"pending_configuration": {"HeartbeatInterval": "300"}},
                "tariffs": {"display_message_id": 7, "costmsg_stations": ["*"]},
            },
        },
        Settings,
    )


BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
EXPIRY = "2030-01-01T00:00:00Z"


def _arguments(host: PluginHost, recorded: Recorded, views: Views) -> dict[str, Any]:
    return {
        "recorded": recorded,
        "exchange": views.last_exchange,
        "views": views,
        "settings": host.settings,
        "sign": lambda request: None,
        "propose": lambda needs: None,
    }


def _commands(results: Any) -> list[Any]:
    return [command for commands in results for command in commands or []]


def check_routing(records: list[Recorded]) -> None:
    """Fold ``records`` routed and unrouted, and react to each routed and unrouted."""
    routed, everything = Views(), Views(routed=False)
    host = PluginHost(_settings())
    hook = host.manager.hook.chargeledger_react
    for recorded in records:
        routed.apply(recorded)
        everything.apply(recorded)
        arguments = _arguments(host, recorded, routed)
        asked = _commands(
            hook._hookexec(hook.name, host.reactors(routed.last_kind), arguments, False)
        )
        every = _commands(hook._hookexec(hook.name, hook.get_hookimpls(), arguments, False))
        assert asked == every, recorded
        # What the dispatcher does next (the host notes the site allocations decided).
        assert host.react(recorded, routed) == host.react(recorded, everything)
    assert state_of(routed) == state_of(everything)


# -- events the generated logs of the projections' own tests leave out --------------------


def _extra(log: test_projections.Log, which: int, station: str) -> None:
    """Append one of a few events of the blocks the generated logs do not cover."""

    def add(stream: str, event: Any) -> None:
        log.records.append(Recorded(len(log.records) + 1, stream, 0, event))

    at = log.at
    if which == 0:
        add("sites-1", SiteDefined(request_id="s1", at=at, key="k", site="S", stations=[station]))
    elif which == 1:
        add("lists-1", LocalListDefined(request_id="l1", at=at, key="k", name="main"))
    elif which == 2:
        add("lists-2", LocalListPushRequested(request_id="l2", at=at, key="k", stations=[station]))
    elif which == 3:
        add("timer-1", TimerStarted(name=f"reservation:{station}:1", due=at + 5, at=at))
        add("timer-1", TimerFired(name=f"reservation:{station}:1", due=at + 5, at=at + 5))
    elif which == 4:
        add("tokens-1", TokenRegistered(request_id="t1", at=at, key="k", id_token="A"))
    elif which == 5:
        add(
            "command-1",
            CommandRequested(
                request_id="c1",
                station=station,
                at=at,
                key="k",
                role="operator",
                mode="message",
                command="CustomerInformation",
                payload={},
            ),
        )
    elif station in log.current:
        session = log.current[station]
        calls: list[tuple[Direction, str, dict[str, Any]]] = [
            ("out", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {}}),
            ("out", "ReserveNow", {"connectorId": 1, "reservationId": 3, "idTag": "A"}),
            ("in", "NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {}}),
            ("out", "SendLocalList", {"listVersion": 2, "updateType": "Full"}),
            ("out", "GetLocalListVersion", {}),
        ]
        direction, action, payload = calls[which % len(calls)]
        result = {"listVersion": 1} if action == "GetLocalListVersion" else {"status": "Accepted"}
        log.call(station, action, payload, result, by=direction)
        log.frame(station, "in", '"not a frame"', session)


class _Generated(test_projections.Generated):
    def _extra(self, index: int, which: int) -> None:
        _extra(self.log, which, test_projections.STATIONS[index])


extra = st.tuples(st.just("extra"), test_projections.station_index, st.integers(0, 11))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(test_projections.operation, extra), min_size=5, max_size=60))
def test_projection_and_plugin_routes_cover_what_they_read(
    operations: list[tuple[Any, ...]],
) -> None:
    check_routing(_Generated(operations).log.records)


@settings(max_examples=25, deadline=None)
@given(st.lists(test_diagnostics_projections.operation, max_size=40))
def test_routes_cover_the_diagnostics_logs(operations: list[tuple[Any, ...]]) -> None:
    check_routing(test_diagnostics_projections.Generated(operations).log.records)


@settings(max_examples=25, deadline=None)
@given(st.lists(test_firmware.firmware_operation, max_size=30))
def test_routes_cover_the_firmware_logs(operations: list[tuple[Any, ...]]) -> None:
    check_routing(test_firmware._firmware_log(operations))


def test_a_projection_is_folded_only_what_it_declared() -> None:
    """The routed views call a projection for its kinds only (its fold is not even called
    for the others), and the unrouted ones for every event."""
    log = test_projections.Log()
    log.open("CP1")
    log.call("CP1", "Heartbeat", {}, {"currentTime": "2024-05-01T10:00:00Z"})
    log.call("CP1", "MeterValues", {"connectorId": 1, "meterValue": []}, {})
    for routed in (True, False):
        views = Views(routed=routed)
        seen: list[int] = []
        fold = views.meters.fold

        def spy(recorded: Recorded, exchange: Any, fold: Any = fold, seen: Any = seen) -> None:
            seen.append(recorded.position)
            fold(recorded, exchange)

        views.meters.fold = spy  # type: ignore[method-assign]
        for recorded in log.records:
            views.apply(recorded)
        assert len(seen) == (2 if routed else 5)
        assert views.last_kind == "MeterValues"


def test_kinds_route_actions_types_and_every_frame() -> None:
    assert routed_to(None, SessionOpened)
    assert routed_to(frozenset({"Heartbeat"}), "Heartbeat")
    assert not routed_to(frozenset({"Heartbeat"}), "MeterValues")
    assert not routed_to(frozenset({"Heartbeat"}), FrameLogged)
    assert routed_to(frozenset({FrameLogged}), "MeterValues")
    assert routed_to(frozenset({FrameLogged}), FrameLogged)
    assert not routed_to(frozenset({FrameLogged}), SessionOpened)
    assert kind_of(SessionOpened(station="a", session="b", at=0, protocol="p"), None) is (
        SessionOpened
    )


def test_reacts_to_declares_and_refuses_nothing_or_non_kinds() -> None:
    @reacts_to(TokenRegistered, "BootNotification")
    def hook() -> None: ...

    assert reacted_kinds(hook) == frozenset({TokenRegistered, "BootNotification"})
    assert reacted_kinds(lambda: None) is None
    with pytest.raises(ValueError, match="at least one"):
        reacts_to()
    with pytest.raises(TypeError, match="neither"):
        reacts_to(3)  # type: ignore[arg-type]


def test_an_undeclared_react_hook_is_called_for_every_event() -> None:
    """A third-party plugin without ``@reacts_to`` keeps working: called for every event,
    beside the declared built-ins, which are called for their kinds only."""
    calls: list[int] = []

    class Plugin:
        @staticmethod
        def chargeledger_react(recorded: Recorded) -> list[Any]:
            calls.append(recorded.position)
            return []

    from chargeledger.core.plugin import hookimpl
    from chargeledger.core.plugin_host import discover

    Plugin.chargeledger_react = hookimpl(Plugin.chargeledger_react)  # type: ignore[method-assign]
    host = PluginHost(Settings(), {**discover(), "third": Plugin})
    log = test_projections.Log()
    log.open("CP1")
    log.call("CP1", "Heartbeat", {}, {"currentTime": "2024-05-01T10:00:00Z"})
    views = Views()
    for recorded in log.records:
        views.apply(recorded)
        host.react(recorded, views)
    assert calls == [1, 2, 3]
    assert [impl.plugin_name for impl in host.reactors("Heartbeat")] == ["third"]
    assert "tariffs" in [impl.plugin_name for impl in host.reactors("MeterValues")]
    assert len(host.reactors(None)) == len(host.manager.hook.chargeledger_react.get_hookimpls())


def test_a_scripted_log_reacts_through_the_routes() -> None:
    """A log on which the built-in react hooks act (not only return nothing): their routes
    must let through what they act on."""
    log = test_projections.Log()
    log.open("CP1")
    log.call("CP1", "BootNotification", BOOT, {"status": "Pending", "interval": 60})
    log.call("CP1", "BootNotification", BOOT, {"status": "Accepted", "interval": 60})
    _extra(log, 1, "CP1")  # a local list of every token
    _extra(log, 4, "CP1")  # token A
    log.call("CP1", "GetLocalListVersion", {}, {"listVersion": 0}, by="out")
    reserve = {"connectorId": 1, "reservationId": 3, "idTag": "A", "expiryDate": EXPIRY}
    log.call("CP1", "ReserveNow", reserve, {"status": "Accepted"}, by="out")
    records = log.records
    check_routing(records)
    views, host = Views(), PluginHost(_settings())
    acted: set[str] = set()
    for recorded in records:
        views.apply(recorded)
        hook = host.manager.hook.chargeledger_react
        for impl in host.reactors(views.last_kind):
            if _commands(
                hook._hookexec(hook.name, [impl], _arguments(host, recorded, views), False)
            ):
                acted.add(impl.plugin_name)
    assert acted >= {"local_list", "provisioning", "reservations"}
