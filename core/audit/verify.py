"""Tamper evidence: recompute every stream's hash chain and report where it breaks."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from chargeledger.core.store import GENESIS, StoredRow, chain_hash, unpack_state

__all__ = ["Break", "ChainVerifier"]


class Break(msgspec.Struct, frozen=True):
    """The first broken link of a stream."""

    position: int
    stream: str
    version: int
    problem: str


class ChainVerifier:
    """Checks stored rows, in position order, against the chain of their stream.

    Each row must follow its stream's previous row (version + 1, ``prev_hash`` equal to that
    row's hash, :data:`GENESIS` for version 1) and its own hash must be the hash of its
    content. Only the first break of a stream is reported: after it, nothing in that stream
    can be trusted anyway.
    """

    def __init__(self) -> None:
        self.events = 0
        self.position = 0
        """The position of the last row checked."""
        self.breaks: list[Break] = []
        self._heads: dict[str, tuple[int, bytes, int]] = {}
        """Per stream: version, hash and position of its last good row."""
        self._broken: set[str] = set()

    @property
    def streams(self) -> int:
        return len(self._heads) + len(self._broken - self._heads.keys())

    def check(self, rows: Iterable[StoredRow]) -> None:
        """Check the next rows of the log."""
        for row in rows:
            self.events += 1
            self.position = row.position
            if row.stream in self._broken:
                continue
            problem = self._problem(row)
            if problem is None:
                continue
            self._broken.add(row.stream)
            self.breaks.append(Break(row.position, row.stream, row.version, problem))

    def _problem(self, row: StoredRow) -> str | None:
        version, head, position = self._heads.get(row.stream, (0, GENESIS, 0))
        prev, digest, body = unpack_state(row.state)
        if prev is None or digest is None:
            return "the event carries no hash: it was written or rewritten outside the chain"
        if row.version != version + 1:
            after = f"version {version} (position {position})" if version else "the start"
            return (
                f"version {row.version} follows {after} of its stream: "
                "events are missing in between"
            )
        if prev != head:
            before = f"position {position}" if version else "none: it is the first"
            return (
                "its prev_hash is not the hash of the stream's previous event "
                f"({before}): an event before it was altered, removed or inserted"
            )
        if chain_hash(prev, row.stream, row.version, row.topic, body) != digest:
            return "its hash does not match its content: the event was altered"
        self._heads[row.stream] = (row.version, digest, row.position)
        return None
