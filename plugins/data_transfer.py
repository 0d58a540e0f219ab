"""DataTransfer (1.6 Core, 2.0.1 P): the default answer for vendor ids nobody claimed is
``UnknownVendorId``, as both versions prescribe.

A vendor-extension plugin answers its own vendor ids by implementing
``chargeledger_answer_call`` for ``DataTransfer``; this implementation is ``trylast`` so it
only answers when no such plugin did.
"""

from __future__ import annotations

from chargeledger.core.commands import Command, Reply
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall

__all__ = ["chargeledger_answer_call"]


@hookimpl(trylast=True)
def chargeledger_answer_call(call: InboundCall) -> list[Command] | None:
    if call.action == "DataTransfer":
        return [Reply({"status": "UnknownVendorId"})]
    return None
