"""A practice attempt's readiness check: did events arrive, which detectors sent them.

Also when an attempt's events can have occurred: monitoring_events is partitioned by
occurred_at, so a read of one attempt's events bounded by this span touches only the
partitions that can hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# At most this many detectors, and event types per detector, in a readiness check.
MAX_DETECTORS = 50
MAX_EVENT_TYPES = 50


@dataclass(frozen=True)
class EventSpan:
    """How the server admits events (config.py): an event arrives while its attempt
    runs or within late_grace after its end, and its occur_time lies from max_age
    before its arrival to max_skew after it."""

    max_age: timedelta = timedelta(hours=24)
    max_skew: timedelta = timedelta(minutes=5)
    late_grace: timedelta = timedelta(seconds=60)

    def of_attempt(
        self, started_at: datetime, ended_at: datetime | None, now: datetime
    ) -> tuple[datetime, datetime]:
        """The first and last occur_time the attempt's events can have."""
        arrivals_end = (ended_at + self.late_grace) if ended_at is not None else now
        return started_at - self.max_age, arrivals_end + self.max_skew


@dataclass(frozen=True)
class DetectorReport:
    """The events one detector (name and version; empty: none given) sent."""

    name: str
    version: str
    event_count: int
    last_event_time: datetime
    event_types: tuple[str, ...]


@dataclass(frozen=True)
class Readiness:
    event_count: int
    first_event_time: datetime | None
    last_event_time: datetime | None
    detectors: tuple[DetectorReport, ...]
