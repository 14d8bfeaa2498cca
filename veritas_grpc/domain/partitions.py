"""Partition upkeep's outcome, and the one way a partition change may fail by design."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


class PartitionBusy(Exception):
    """A partition change could not take its locks within the maintenance lock timeout
    (long readers or writers hold the table): nothing changed, retry later."""


@dataclass(frozen=True)
class PartitionUpkeep:
    """The daily partitions a run created or dropped, and those it left for later."""

    changed: list[date] = field(default_factory=list)
    busy: list[date] = field(default_factory=list)

    def __add__(self, other: PartitionUpkeep) -> PartitionUpkeep:
        return PartitionUpkeep(self.changed + other.changed, self.busy + other.busy)
