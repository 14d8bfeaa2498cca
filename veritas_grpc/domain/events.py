"""Monitoring events: what a valid event is, the row it becomes, and who may write it
to which attempt when."""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from veritas_grpc.domain.exams import AttemptStatus
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.domain.ids import canonical_uuid
from veritas_grpc.domain.payload import payload_problem

# \Z, not $: $ also matches before a trailing newline.
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
MAX_DESCRIPTION = 1000
# The smallest normal 32-bit float: below it PostgreSQL's REAL refuses or loses a value.
SMALLEST_REAL = 1.1754943508222875e-38
SEVERITY_ORDER = {"INFO": 1, "WARNING": 2, "CRITICAL": 3}
# An event sent without a severity, of a type the exam's rules give none.
DEFAULT_SEVERITY = "INFO"
CATEGORIES = ("INTEGRITY", "TECHNICAL")
# The columns an event is stored in, in the order the row and the COPY lines hold
# them (the table adds received_at itself).
EVENT_COLUMNS = (
    "attempt_id",
    "occurred_at",
    "event_id",
    "event_type",
    "category",
    "severity",
    "is_anomaly",
    "description",
    "detector_name",
    "detector_version",
    "detector_confidence",
    "data",
    "sent_by",
)
# What makes an event the same event: (attempt_id, occurred_at, event_id).
EventKey = tuple[str, datetime, str]


class IncomingEvent(NamedTuple):
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
    # The agent sent an occur_time no datetime can hold (before year 1, after 9999, or
    # nanos out of range): the conversion cannot make it an occurred_at.
    occur_time_unrepresentable: bool = False


class EventRow:
    """A valid event, ready to store. Ids are canonical lower-case UUID strings: events
    are many, and they go to COPY as text anyway. severity is None until the exam's
    rules resolve it; sent_by is set when the sender is checked."""

    __slots__ = (*EVENT_COLUMNS, "key")

    def __init__(
        self,
        attempt_id: str,
        occurred_at: datetime,
        event_id: str,
        event_type: str,
        category: str,
        severity: str | None,
        is_anomaly: bool,
        description: str = "",
        detector_name: str = "",
        detector_version: str = "",
        detector_confidence: float | None = None,
        data: str | None = None,
        sent_by: str | None = None,
    ) -> None:
        self.attempt_id = attempt_id
        self.occurred_at = occurred_at
        self.event_id = event_id
        self.event_type = event_type
        self.category = category
        self.severity = severity
        self.is_anomaly = is_anomaly
        self.description = description
        self.detector_name = detector_name
        self.detector_version = detector_version
        self.detector_confidence = detector_confidence
        self.data = data
        self.sent_by = sent_by
        # A resend repeats all three.
        self.key: EventKey = (attempt_id, occurred_at, event_id)

    @property
    def is_alert(self) -> bool:
        return self.is_anomaly or self.severity == "CRITICAL"


@dataclass(frozen=True)
class EventWindow:
    """How far from the server's clock an event's occur_time may be."""

    max_age: timedelta = timedelta(hours=24)
    max_skew: timedelta = timedelta(minutes=5)


# Free-text fields of an event, by their path from the event, with their longest length.
TEXT_FIELDS = (
    ("description", MAX_DESCRIPTION),
    ("detector.name", 64),
    ("detector.version", 32),
)


_DESCRIPTION_MAX, _NAME_MAX, _VERSION_MAX = (longest for _, longest in TEXT_FIELDS)


def _text_problem(event: IncomingEvent) -> Refusal | None:
    description, name, version = event.description, event.detector_name, event.detector_version
    # Runs for every ingested event: the common case in a few comparisons, the loop
    # only to name what is wrong.
    if (
        len(description) <= _DESCRIPTION_MAX
        and len(name) <= _NAME_MAX
        and len(version) <= _VERSION_MAX
        and "\x00" not in description
        and "\x00" not in name
        and "\x00" not in version
    ):
        return None
    values = (description, name, version)
    for (field, longest), value in zip(TEXT_FIELDS, values, strict=True):
        if len(value) > longest:
            return invalid(field, f"longer than {longest} characters")
        if "\x00" in value:
            return invalid(field, "must not contain NUL characters")
    return None


class RefusalKind(enum.StrEnum):
    INVALID = "invalid"  # the event itself is wrong: sending it again cannot help
    NOT_FOUND = "not_found"  # no such attempt, or not the sender's
    NOT_IN_PROGRESS = "not_in_progress"  # the attempt ended (beyond the late grace)
    UNAVAILABLE = "unavailable"  # storage failed: the same event may succeed later


@dataclass(frozen=True)
class Refusal:
    """Why an event is not stored: the kind of problem, the field at fault (its path
    from the event, e.g. "data_json" or "detector.name"; "" for the whole event) and
    what is wrong with it."""

    kind: RefusalKind
    field: str
    problem: str

    @property
    def retryable(self) -> bool:
        return self.kind is RefusalKind.UNAVAILABLE


def invalid(field: str, problem: str) -> Refusal:
    return Refusal(RefusalKind.INVALID, field, problem)


def check_event(event: IncomingEvent, now: datetime, window: EventWindow) -> EventRow | Refusal:
    """The row to store, or why the event is refused."""
    event_id = canonical_uuid(event.event_id)
    if event_id is None:
        return invalid("event_id", "must be a UUID (8-4-4-4-12 hex digits)")
    attempt_id = canonical_uuid(event.attempt_id)
    if attempt_id is None:
        return invalid("attempt_id", "must be a UUID (8-4-4-4-12 hex digits)")
    if not EVENT_TYPE.match(event.event_type):
        return invalid("event_type", "must be lower_snake_case, 1 to 64 characters")
    if event.occur_time_unrepresentable:
        return invalid("occur_time", "not a time between the years 1 and 9999")
    if event.occurred_at is None:
        return invalid("occur_time", "is required")
    if event.category is not None and event.category not in CATEGORIES:
        return invalid("category", "unknown value")
    if event.severity is not None and event.severity not in SEVERITY_ORDER:
        return invalid("severity", "unknown value")
    if event.occurred_at < now - window.max_age:
        return invalid("occur_time", "too far in the past")
    if event.occurred_at > now + window.max_skew:
        return invalid("occur_time", "in the future (check the agent's clock)")
    if problem := _text_problem(event):
        return problem
    confidence = event.detector_confidence
    if confidence is not None and not 0 <= confidence <= 1:
        return invalid("detector.confidence_score", "must be between 0 and 1")
    if confidence is not None and confidence < SMALLEST_REAL:
        confidence = 0.0  # the column is a 32-bit REAL, which refuses what it cannot hold
    if event.data_json and (problem := payload_problem(event.data_json)):
        return invalid("data_json", problem)
    return EventRow(
        attempt_id,
        event.occurred_at,
        event_id,
        event.event_type,
        event.category or "INTEGRITY",
        event.severity,
        event.is_anomaly,
        event.description,
        event.detector_name,
        event.detector_version,
        confidence,
        event.data_json or None,
    )


# Who may write to which attempt ------------------------------------------------------

UNKNOWN_ATTEMPT = Refusal(RefusalKind.NOT_FOUND, "attempt_id", "unknown attempt")
NOT_IN_PROGRESS = Refusal(
    RefusalKind.NOT_IN_PROGRESS, "attempt_id", "the attempt is no longer in progress"
)


@dataclass(frozen=True)
class AlertTarget:
    """Where an attempt's alerts go: its exam's watchers; events of the exempt types
    raise none."""

    exam_id: uuid.UUID
    student_id: uuid.UUID
    exempt_types: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AttemptTarget:
    """What the ingestion path needs to know about an attempt events are sent to."""

    attempt_id: uuid.UUID
    exam_id: uuid.UUID
    student_id: uuid.UUID
    status: AttemptStatus
    ended_at: datetime | None
    default_severities: dict[str, str]
    # What the student's allowances exempt, as read with the rest (a stream keeps it
    # as long as it trusts the status: ingestion.TARGET_TTL_SECONDS).
    exempt_types: frozenset[str] = frozenset()

    @property
    def alert_target(self) -> AlertTarget:
        return AlertTarget(self.exam_id, self.student_id, self.exempt_types)

    def severity_for(self, event_type: str) -> str:
        """The severity of an event sent without one: the exam's rule for its type."""
        return self.default_severities.get(event_type, DEFAULT_SEVERITY)


def refusal(
    sender: Principal, target: AttemptTarget | None, now: datetime, late_grace: timedelta
) -> Refusal | None:
    """Why the sender may not write to the attempt now, or None.
    Events still arriving within late_grace of the attempt's end are let in: agents
    send what they buffered after the attempt ends."""
    if target is None or (sender.role is not Role.SERVICE and target.student_id != sender.user_id):
        # Another student's attempt is as unknown as a missing one.
        return UNKNOWN_ATTEMPT
    if target.status is AttemptStatus.IN_PROGRESS:
        return None
    if target.ended_at is not None and now - target.ended_at <= late_grace:
        return None
    return NOT_IN_PROGRESS
