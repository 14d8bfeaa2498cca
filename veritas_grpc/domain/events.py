"""Monitoring events: what a valid event is, and the row it becomes."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_DATA_BYTES = 16 * 1024
MAX_DESCRIPTION = 1000
SEVERITY_ORDER = {"INFO": 1, "WARNING": 2, "CRITICAL": 3}
CATEGORIES = ("INTEGRITY", "TECHNICAL")


@dataclass(frozen=True)
class IncomingEvent:
    """An event as the agent sent it, in plain values (None: the agent left it unset)."""

    event_id: str
    attempt_id: str
    event_type: str
    category: str | None
    severity: str | None
    is_anomaly: bool
    occurred_at: datetime | None
    data_json: str
    description: str
    detector_name: str = ""
    detector_version: str = ""
    detector_confidence: float | None = None


@dataclass(frozen=True)
class EventRow:
    """A valid event, ready to store. severity is None until the exam's rules resolve it."""

    attempt_id: uuid.UUID
    occurred_at: datetime
    event_id: uuid.UUID
    event_type: str
    category: str
    severity: str | None
    is_anomaly: bool
    description: str
    detector_name: str
    detector_version: str
    detector_confidence: float | None
    data: str | None
    sent_by: uuid.UUID | None = None

    @property
    def key(self) -> tuple[uuid.UUID, datetime, uuid.UUID]:
        return (self.attempt_id, self.occurred_at, self.event_id)

    @property
    def is_alert(self) -> bool:
        return self.is_anomaly or self.severity == "CRITICAL"


@dataclass(frozen=True)
class EventWindow:
    """How far from the server's clock occurred_at may be."""

    max_age: timedelta = timedelta(hours=24)
    max_skew: timedelta = timedelta(minutes=5)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _data_problem(data_json: str) -> str | None:
    if len(data_json.encode("utf-8")) > MAX_DATA_BYTES:
        return f"data_json: larger than {MAX_DATA_BYTES // 1024} KiB"
    try:
        parsed = json.loads(data_json)
    except ValueError:
        return "data_json: not valid JSON"
    return None if isinstance(parsed, dict) else "data_json: must be a JSON object"


def check_event(event: IncomingEvent, now: datetime, window: EventWindow) -> EventRow | str:
    """The row to store, or the reason (field: problem) the event is rejected."""
    event_id = _uuid(event.event_id)
    if event_id is None:
        return "event_id: must be a UUID"
    attempt_id = _uuid(event.attempt_id)
    if attempt_id is None:
        return "attempt_id: must be a UUID"
    if not EVENT_TYPE.match(event.event_type):
        return "event_type: must be lower_snake_case, 1 to 64 characters"
    if event.occurred_at is None:
        return "occurred_at: is required"
    if event.occurred_at < now - window.max_age:
        return "occurred_at: too far in the past"
    if event.occurred_at > now + window.max_skew:
        return "occurred_at: in the future (check the agent's clock)"
    if len(event.description) > MAX_DESCRIPTION:
        return f"description: longer than {MAX_DESCRIPTION} characters"
    if len(event.detector_name) > 64 or len(event.detector_version) > 32:
        return "detector: name or version too long"
    confidence = event.detector_confidence
    if confidence is not None and not 0 <= confidence <= 1:
        return "detector.confidence: must be between 0 and 1"
    if event.data_json and (problem := _data_problem(event.data_json)):
        return problem
    return EventRow(
        attempt_id=attempt_id,
        occurred_at=event.occurred_at,
        event_id=event_id,
        event_type=event.event_type,
        category=event.category or "INTEGRITY",
        severity=event.severity,
        is_anomaly=event.is_anomaly,
        description=event.description,
        detector_name=event.detector_name,
        detector_version=event.detector_version,
        detector_confidence=confidence,
        data=event.data_json or None,
    )
