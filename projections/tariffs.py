"""The tariff registry: the tariffs an operator defined and where they are assigned
(docs/tariffs.md), folded from ``TariffDefined`` / ``TariffRemoved`` / ``TariffAssigned`` /
``TariffUnassigned``; and which tariff a transaction gets (:meth:`TariffsProjection.resolve`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

import msgspec

from chargeledger.core.events import (
    Recorded,
    TariffAssigned,
    TariffDefined,
    TariffRemoved,
    TariffUnassigned,
)
from chargeledger.core.tariff import Tariff, parse_instant
from chargeledger.projections.exchanges import Kind
from chargeledger.projections.sites import SitesProjection

__all__ = [
    "Assignment",
    "TariffState",
    "TariffsProjection",
    "targets_for",
    "valid_at",
]


class TariffState(msgspec.Struct, frozen=True, kw_only=True):
    """A tariff as its newest definition left it."""

    tariff: Tariff
    at: float
    """When the newest definition was made (UNIX seconds)."""
    key: str
    """Who made it."""
    position: int
    """Log position of the newest ``TariffDefined``."""


class Assignment(msgspec.Struct, frozen=True, kw_only=True):
    """A tariff assigned to a target (for one token group, or every token)."""

    target: str
    tariff_id: str
    group: str | None
    at: float
    key: str
    position: int


def targets_for(station: str, sites: Sequence[str] = ()) -> list[str]:
    """The assignment targets that apply to ``station``, most specific first: the station,
    then the ``sites`` it is in (innermost first, as ``SitesProjection.sites_of`` gives
    them), then ``default``."""
    return [f"station:{station}", *(f"site:{site}" for site in sites), "default"]


def valid_at(tariff: Tariff, moment: datetime) -> bool:
    """Whether ``moment`` is within the tariff's validity period ``[valid_from, valid_to)``."""
    if tariff.valid_from is not None and moment < parse_instant(tariff.valid_from):
        return False
    return tariff.valid_to is None or moment < parse_instant(tariff.valid_to)


class TariffsProjection:
    """Tariffs (the newest definition of each wins; a removal forgets it) and their
    assignments (one per target, group and tariff; unassigning one that is not there
    changes nothing). Every other event is ignored."""

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {TariffDefined, TariffRemoved, TariffAssigned, TariffUnassigned}
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self, sites: SitesProjection | None = None) -> None:
        self._sites = sites
        """Where a station's sites are read from (``site:<id>`` targets); none: no sites."""
        self._tariffs: dict[str, TariffState] = {}
        self._assignments: dict[tuple[str, str | None, str], Assignment] = {}
        self.position = 0
        """Log position of the newest event that changed the registry (0: none yet)."""

    def get(self, tariff_id: str) -> TariffState | None:
        """The tariff's newest definition, ``None`` when it is not defined."""
        return self._tariffs.get(tariff_id)

    def all(self) -> list[TariffState]:
        """Every defined tariff, sorted by id."""
        return [self._tariffs[key] for key in sorted(self._tariffs)]

    def assignments(self, tariff_id: str | None = None) -> list[Assignment]:
        """Every assignment (of ``tariff_id`` only, when given), oldest first."""
        found = self._assignments.values()
        return sorted(
            (a for a in found if tariff_id is None or a.tariff_id == tariff_id),
            key=lambda assignment: assignment.position,
        )

    def assignment(self, tariff_id: str, target: str, group: str | None) -> Assignment | None:
        """The assignment of ``tariff_id`` to ``target`` for ``group``, ``None`` if none."""
        return self._assignments.get((target, group, tariff_id))

    def resolve(self, station: str, group: str | None, moment: datetime) -> Tariff | None:
        """The tariff a transaction of a token of ``group`` starting at ``moment`` on
        ``station`` gets: among the assignments to the station's targets (the station
        first, then its sites, innermost first, then ``default``), those for ``group``
        before those for every token; the first of these whose tariff is defined and valid
        at ``moment``, the newest assignment when several are. ``None``: no tariff applies
        (nothing is priced)."""
        sites = () if self._sites is None else self._sites.sites_of(station)
        for target in targets_for(station, sites):
            for wanted in ([group] if group is not None else []) + [None]:
                candidates = [
                    (assignment.position, state.tariff)
                    for (t, g, tariff_id), assignment in self._assignments.items()
                    if t == target
                    and g == wanted
                    and (state := self._tariffs.get(tariff_id)) is not None
                    and valid_at(state.tariff, moment)
                ]
                if candidates:
                    return max(candidates, key=lambda found: found[0])[1]
        return None

    def apply(self, recorded: Recorded) -> None:
        """Fold the next committed event."""
        event = recorded.event
        if isinstance(event, TariffDefined):
            self._tariffs[event.tariff.id] = TariffState(
                tariff=event.tariff, at=event.at, key=event.key, position=recorded.position
            )
        elif isinstance(event, TariffRemoved):
            if self._tariffs.pop(event.tariff_id, None) is None:
                return
        elif isinstance(event, TariffAssigned):
            self._assignments[(event.target, event.group, event.tariff_id)] = Assignment(
                target=event.target,
                tariff_id=event.tariff_id,
                group=event.group,
                at=event.at,
                key=event.key,
                position=recorded.position,
            )
        elif isinstance(event, TariffUnassigned):
            key = (event.target, event.group, event.tariff_id)
            if self._assignments.pop(key, None) is None:
                return
        else:
            return
        self.position = recorded.position
