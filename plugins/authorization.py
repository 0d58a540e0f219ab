"""Authorization (1.6 Core Authorize / 2.0.1 C): which id tags may charge.

Options (``[plugins.authorization]``): ``blocked`` (tags answered Blocked), ``known`` (when
non-empty, only these tags are Accepted; others are Invalid). With no options every tag is
Accepted, which is what a CSMS without a token database does.
"""

from __future__ import annotations

from typing import Any

from chargeledger.core.commands import Command, Reply
from chargeledger.core.hookspec import hookimpl
from chargeledger.core.plugin_host import InboundCall
from chargeledger.core.settings import Settings
from chargeledger.plugins._common import options

__all__ = ["chargeledger_answer_call", "id_tag_info"]


def id_tag_info(id_tag: str, settings: Settings) -> dict[str, Any]:
    """The 1.6 ``idTagInfo`` for ``id_tag`` under the configured lists."""
    table = options(settings, "authorization")
    if id_tag in table.get("blocked", []):
        return {"status": "Blocked"}
    known = table.get("known", [])
    if known and id_tag not in known:
        return {"status": "Invalid"}
    return {"status": "Accepted"}


@hookimpl
def chargeledger_answer_call(call: InboundCall, settings: Settings) -> list[Command] | None:
    if call.action != "Authorize":
        return None
    return [Reply({"idTagInfo": id_tag_info(call.payload.id_tag, settings)})]
