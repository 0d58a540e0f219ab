"""The plugin host: finds plugins, registers the enabled ones with pluggy, and asks them.

Plugins come from three places: the modules of :mod:`chargeledger.plugins` (named in
``BUILTIN_PLUGINS``), the ``chargeledger.plugins`` entry-point group of installed
distributions, and the importable modules named in ``Settings.plugin_modules``. A plugin's
name is its entry-point name or, otherwise, its module name (the last dotted part for
built-ins, the full dotted path for ``plugin_modules``); ``Settings.disabled_plugins`` names
the ones not to register.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any, cast

import pluggy

from chargeledger.core import hookspec
from chargeledger.core.plugin import (
    PROJECT,
    CertificateCheck,
    CertificateRequest,
    Command,
    ContractCertificateAnswer,
    ContractCertificateRequest,
    EVChargingNeeds,
    HttpRequest,
    HttpResponse,
    InboundCall,
    OcspQuery,
    OcspVerdict,
    Recorded,
    Settings,
    TimerFired,
    Views,
    answered_actions,
    reacted_kinds,
)
from chargeledger.projections.exchanges import Kind, routed_to

__all__ = ["BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "PluginHost", "discover"]

ENTRY_POINT_GROUP = "chargeledger.plugins"

BUILTIN_PLUGINS = (
    "provisioning",
    "authorization",
    "transactions",
    "availability",
    "data_transfer",
    "notifications",
    "certificates",
    "device_model",
    "diagnostics",
    "local_list",
    "reservations",
    "display_messages",
    "tariffs",
    "smart_charging",
    "site_limits",
    "plug_and_charge",
    "firmware",
)
"""The functional blocks shipped with ChargeLedger, in :mod:`chargeledger.plugins`."""


def discover(modules: Iterable[str] = ()) -> dict[str, object]:
    """Every plugin that can be enabled, by name: built-ins, entry points, then ``modules``.

    Raises ``ImportError`` when a named module or an entry point cannot be imported: a
    platform team's block that silently failed to load would be worse than no server."""
    found: dict[str, object] = {
        name: importlib.import_module(f"chargeledger.plugins.{name}") for name in BUILTIN_PLUGINS
    }
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        found[entry_point.name] = entry_point.load()
    for module in modules:
        found[module] = importlib.import_module(module)
    return found


class PluginHost:
    """Holds the pluggy manager and asks the registered plugins.

    CALLs are routed by action: an implementation of ``chargeledger_answer_call`` that
    declares the actions it answers (:func:`~chargeledger.core.plugin.answers`) is asked
    about those only; one without the declaration about every CALL. Committed events are
    routed by kind the same way: an implementation of ``chargeledger_react`` that declares
    what it reacts to (:func:`~chargeledger.core.plugin.reacts_to`) is called for those
    events only; one without the declaration for every event. The implementations asked run
    through pluggy's own call loop, in pluggy's order, so ``firstresult``, ``tryfirst`` /
    ``trylast`` and wrappers behave as without routing. Routes are computed once per action
    or kind: register plugins through the constructor only.

    Raises ``ValueError`` when ``settings.disabled_plugins`` names a plugin that does not exist
    (a typo there would silently leave a block enabled).
    """

    def __init__(self, settings: Settings, plugins: dict[str, object] | None = None) -> None:
        self.settings = settings
        available = discover(settings.plugin_modules) if plugins is None else plugins
        unknown = set(settings.disabled_plugins) - set(available)
        if unknown:
            raise ValueError(f"unknown plugin(s) in disabled_plugins: {sorted(unknown)}")
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(hookspec)
        for name, plugin in available.items():
            if name not in settings.disabled_plugins:
                self.manager.register(plugin, name=name)
        self._routes: dict[str, list[pluggy.HookImpl]] = {}
        self._reactors: dict[Kind, list[pluggy.HookImpl]] = {}

    @property
    def enabled(self) -> list[str]:
        """Names of the registered plugins."""
        return [name for name, _ in self.manager.list_name_plugin()]

    def answerers(self, action: str) -> list[str]:
        """The implementations asked about an ``action`` CALL, in the order they are asked,
        as ``plugin:function`` names."""
        return [
            f"{impl.plugin_name}:{impl.function.__name__}" for impl in reversed(self._route(action))
        ]

    def _route(self, action: str, hook: str = "chargeledger_answer_call") -> list[pluggy.HookImpl]:
        route = self._routes.get(f"{hook}:{action}")
        if route is None:
            route = self._routes[f"{hook}:{action}"] = [
                impl
                for impl in getattr(self.manager.hook, hook).get_hookimpls()
                if (actions := answered_actions(impl.function)) is None or action in actions
            ]
        return route

    def answer_call(self, call: InboundCall, views: Views) -> list[Command] | None:
        """The plugins' answer to ``call``: a refusal of ``chargeledger_admit_call`` (as a
        one-command list), else the first answer of the plugins routed ``call.action``
        (``None`` when no plugin answered). Exceptions of a plugin propagate."""
        hook = self.manager.hook
        refusal = hook.chargeledger_admit_call(call=call, views=views, settings=self.settings)
        if refusal is not None:
            return [refusal]
        answer = hook.chargeledger_answer_call
        # pluggy's call loop over the routed implementations, kept in pluggy's order: what
        # calling the hook does (and what pluggy's own subset hook caller does per plugin).
        result = answer._hookexec(
            answer.name,
            self._route(call.action),
            {
                "call": call,
                "views": views,
                "settings": self.settings,
                "provide": self.contract_certificate,
            },
            True,
        )
        return cast("list[Command] | None", result)

    def reactors(self, kind: Kind | None) -> list[pluggy.HookImpl]:
        """The ``chargeledger_react`` implementations called for an event of ``kind``
        (:func:`~chargeledger.projections.exchanges.kind_of`), in pluggy's order; every one
        for ``None`` (a kind not known)."""
        hook = self.manager.hook.chargeledger_react
        if kind is None:
            return list(hook.get_hookimpls())
        route = self._reactors.get(kind)
        if route is None:
            route = self._reactors[kind] = [
                impl
                for impl in hook.get_hookimpls()
                if routed_to(reacted_kinds(impl.function), kind)
            ]
        return route

    def react(self, recorded: Recorded, views: Views) -> list[Command]:
        """The commands of the plugins that react to ``recorded``'s kind (all of them when
        ``recorded`` is not the event folded last), already folded into ``views``; the
        exchange it completed is ``views.last_exchange``. Exceptions propagate."""
        kind = views.last_kind if views.position == recorded.position else None
        impls = self.reactors(kind)
        if not impls:
            return []
        hook = self.manager.hook.chargeledger_react
        # pluggy's call loop over the routed implementations, as answer_call does.
        results = cast(
            "list[list[Command]]",
            hook._hookexec(
                hook.name,
                impls,
                {
                    "recorded": recorded,
                    "exchange": views.last_exchange,
                    "views": views,
                    "settings": self.settings,
                    "sign": self.sign_certificate,
                    "propose": lambda needs: self.propose_charging_schedule(needs, views),
                },
                False,
            ),
        )
        found = [command for commands in results for command in (commands or [])]
        # The site allocations decided are in flight from now on, for the next decision to
        # see before the dispatcher has recorded them (projections/sites.py).
        event = recorded.event
        at = event.due if isinstance(event, TimerFired) else getattr(event, "at", None)
        if found and at is not None:
            views.sites.note(found, at)
        return found

    def propose_charging_schedule(
        self, needs: EVChargingNeeds, views: Views
    ) -> dict[str, Any] | None:
        """The first proposal (``chargeledger_propose_charging_schedule``) for the EV's
        charging needs, ``None`` when no plugin proposes one."""
        proposal: dict[str, Any] | None = self.manager.hook.chargeledger_propose_charging_schedule(
            needs=needs, views=views, settings=self.settings
        )
        return proposal

    def sign_certificate(self, request: CertificateRequest) -> str | None:
        """The first signer's PEM chain for ``request`` (``chargeledger_sign_certificate``),
        ``None`` when none signed it. Exceptions of a signer propagate."""
        chain: str | None = self.manager.hook.chargeledger_sign_certificate(
            request=request, settings=self.settings
        )
        return chain

    def checks_asked(self, action: str) -> bool:
        """Whether any ``chargeledger_certificate_checks`` implementation is asked about
        ``action`` CALLs (routed by :func:`~chargeledger.core.plugin.answers` like the
        answers): the others skip the checking step at no cost."""
        return bool(self._route(action, "chargeledger_certificate_checks"))

    def certificate_checks(self, call: InboundCall, views: Views) -> list[CertificateCheck]:
        """The OCSP checks and contract-provider calls ``call`` needs before it is answered
        (``chargeledger_certificate_checks``, the implementations routed ``call.action``);
        none for a CALL the gate refuses. Exceptions of a plugin propagate."""
        hook = self.manager.hook
        if hook.chargeledger_admit_call(call=call, views=views, settings=self.settings):
            return []
        checks = hook.chargeledger_certificate_checks
        results = checks._hookexec(
            checks.name,
            self._route(call.action, checks.name),
            {"call": call, "views": views, "settings": self.settings},
            False,
        )
        return [
            check for checks in cast("list[list[CertificateCheck]]", results) for check in checks
        ]

    def ocsp_request(self, query: OcspQuery) -> HttpRequest | None:
        """The HTTP request asking about ``query`` (``chargeledger_ocsp_request``)."""
        request: HttpRequest | None = self.manager.hook.chargeledger_ocsp_request(
            query=query, settings=self.settings
        )
        return request

    def ocsp_verdict(self, query: OcspQuery, response: HttpResponse) -> OcspVerdict | None:
        """What ``response`` says of ``query`` (``chargeledger_ocsp_verdict``)."""
        verdict: OcspVerdict | None = self.manager.hook.chargeledger_ocsp_verdict(
            query=query, response=response, settings=self.settings
        )
        return verdict

    def contract_certificate(
        self, request: ContractCertificateRequest
    ) -> ContractCertificateAnswer | None:
        """The first provider's answer to ``request`` (``chargeledger_contract_certificate``),
        ``None`` when no provider answered. Exceptions of a provider propagate."""
        answer: ContractCertificateAnswer | None = (
            self.manager.hook.chargeledger_contract_certificate(
                request=request, settings=self.settings
            )
        )
        return answer

    def contract_request(self, request: ContractCertificateRequest) -> HttpRequest | None:
        """The HTTP request to a remote contract-certificate provider for ``request``
        (``chargeledger_contract_request``); ``None`` when there is no remote provider."""
        http: HttpRequest | None = self.manager.hook.chargeledger_contract_request(
            request=request, settings=self.settings
        )
        return http

    def contract_answer(
        self, request: ContractCertificateRequest, response: HttpResponse
    ) -> ContractCertificateAnswer | None:
        """What the remote provider's ``response`` says (``chargeledger_contract_answer``)."""
        answer: ContractCertificateAnswer | None = self.manager.hook.chargeledger_contract_answer(
            request=request, response=response, settings=self.settings
        )
        return answer
