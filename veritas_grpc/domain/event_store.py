"""What storing monitoring events can come to, and what reading them gives back: the
words the ingestion use case, the event writer and the event repository share."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class Outcome(Enum):
    """What became of one submitted event."""

    STORED = "stored"  # stored now
    DUPLICATE = "duplicate"  # stored before
    REFUSED = "refused"  # the database refused a value of it, on its own
    UNTRIED = "untried"  # not tried alone: its message used up the isolation budget


class StorageFailed(Exception):
    """The batch could not be committed; none of its events is stored."""


class EventsAlreadyStored(Exception):
    """A COPY met events stored before: nothing of it was written."""


class ValuesRefused(Exception):
    """PostgreSQL refused a value of the batch (a data exception, SQLSTATE class 22):
    storing the same rows again cannot succeed. Constraint errors are not refusals: the
    checks keep agents' values within the constraints, and a missing partition (an
    operations failure, which a resend after repair survives) is one too."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored event as read back; data is the payload's text exactly as sent."""

    attempt_id: uuid.UUID
    occurred_at: datetime
    event_id: uuid.UUID
    received_at: datetime
    event_type: str
    category: str
    severity: str
    is_anomaly: bool
    description: str
    detector_name: str
    detector_version: str
    detector_confidence: float | None
    data: str | None
    sent_by: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class EventTally:
    """How many events of one type and severity an attempt has."""

    event_type: str
    severity: str
    count: int
    anomaly_count: int
