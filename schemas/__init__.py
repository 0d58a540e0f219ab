"""The OCPP payload types per protocol version, looked up by action name.

The types live in the generated modules :mod:`chargeledger.schemas.v16` and
:mod:`chargeledger.schemas.v201` (see ``schemas/generate.py``). They are imported on first
use, not here, so that the generator (run as ``python -m chargeledger.schemas.generate``) still
works when a generated module is stale or broken.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import msgspec

__all__ = ["OCPP16", "OCPP201", "PROTOCOLS", "actions", "request_type", "response_type"]

OCPP16 = "ocpp1.6"
OCPP201 = "ocpp2.0.1"
PROTOCOLS = (OCPP16, OCPP201)
"""The WebSocket subprotocol names, which are also how the code names a version."""

_MODULES = {OCPP16: "chargeledger.schemas.v16", OCPP201: "chargeledger.schemas.v201"}


@functools.cache
def _module(protocol: str) -> ModuleType:
    try:
        name = _MODULES[protocol]
    except KeyError:
        raise ValueError(
            f"unknown OCPP protocol {protocol!r}; expected one of {PROTOCOLS}"
        ) from None
    return importlib.import_module(name)


def request_type(protocol: str, action: str) -> type[msgspec.Struct] | None:
    """The request payload type of ``action`` in ``protocol``, or None for an unknown action.

    Raises ``ValueError`` for a protocol that is not in ``PROTOCOLS``.
    """
    requests: dict[str, type[msgspec.Struct]] = _module(protocol).REQUESTS
    return requests.get(action)


def response_type(protocol: str, action: str) -> type[msgspec.Struct] | None:
    """The response payload type of ``action`` in ``protocol``, or None for an unknown action.

    Raises ``ValueError`` for a protocol that is not in ``PROTOCOLS``.
    """
    responses: dict[str, type[msgspec.Struct]] = _module(protocol).RESPONSES
    return responses.get(action)


@functools.cache
def actions(protocol: str) -> frozenset[str]:
    """Every action ``protocol`` defines (in either direction).

    Raises ``ValueError`` for a protocol that is not in ``PROTOCOLS``.
    """
    return frozenset(_module(protocol).REQUESTS)
