"""A station's local authorization list, as the test charge points keep it: what a real
charge point does with a SendLocalList (apply an accepted full or differential update, keep
its version), plus answers a test may force (``VersionMismatch``, ``Failed``)."""

from __future__ import annotations

from typing import Any

__all__ = ["HeldList"]


class HeldList:
    """The list a test charge point holds: ``version`` (0: none), ``entries`` by token
    (an entry's info as sent), every update received in ``updates`` as (version, update
    type, items), and ``answers``: statuses to give the next updates instead of
    ``Accepted`` (first in, first used)."""

    def __init__(self) -> None:
        self.version = 0
        self.entries: dict[str, Any] = {}
        self.updates: list[tuple[int, str, int]] = []
        self.answers: list[str] = []

    def update(self, version: int, update_type: str, items: list[dict[str, Any]]) -> str:
        """Apply a SendLocalList (items as the ``ocpp`` package hands them: snake_case, 1.6
        ``id_tag``/``id_tag_info`` or 2.0.1 ``id_token``/``id_token_info``); the status."""
        self.updates.append((version, update_type, len(items)))
        status = self.answers.pop(0) if self.answers else "Accepted"
        if status != "Accepted":
            return status
        if update_type == "Full":
            self.entries = {}
        for item in items:
            token = item.get("id_tag") or item["id_token"]["id_token"]
            info = item.get("id_tag_info") or item.get("id_token_info")
            if info is None:
                self.entries.pop(token, None)
            else:
                self.entries[token] = info
        self.version = version
        return status
