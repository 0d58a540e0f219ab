"""DataTransfer (1.6 Core, 2.0.1 P): the default answer for vendor ids nobody claimed is
``UnknownVendorId``, as both versions prescribe.

A vendor-extension plugin answers its own vendor ids by implementing
``chargeledger_answer_call`` for ``DataTransfer`` (``@answers("DataTransfer")``); this
implementation is ``trylast`` so it only answers when no such plugin did.
"""

from __future__ import annotations

from chargeledger.core.plugin import Command, Reply, answers, hookimpl

__all__ = ["chargeledger_answer_call"]


@hookimpl(trylast=True)
@answers("DataTransfer")
def chargeledger_answer_call() -> list[Command]:
    return [Reply({"status": "UnknownVendorId"})]
