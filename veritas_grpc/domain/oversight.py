"""What the administrators' oversight reads deal in: an attempt search and the
system-wide figures, as plain values."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from veritas_grpc.domain.exams import AttemptStatus


@dataclass(frozen=True)
class AttemptSearch:
    """Every filter given must hold; None leaves it out."""

    student_id: uuid.UUID | None = None
    exam_id: uuid.UUID | None = None
    status: AttemptStatus | None = None
    flagged: bool | None = None
    start_time: datetime | None = None  # started at or after
    end_time: datetime | None = None  # started before


@dataclass(frozen=True)
class SystemFigures:
    """The whole system's figures at compute_time."""

    compute_time: datetime
    # (role, active, count), (exam status, count), (attempt status, count)
    users: tuple[tuple[str, bool, int], ...]
    exams: tuple[tuple[str, int], ...]
    attempts: tuple[tuple[str, int], ...]
    graded_count: int
    passed_count: int
    integrity_good_count: int
    integrity_watch_count: int
    integrity_at_risk_count: int
    integrity_unassessed_count: int
    flagged_attempt_count: int
    last_hour_event_count: int
    last_day_event_count: int
    # The last 30 UTC days, oldest first, today last.
    daily_event_counts: tuple[tuple[date, int], ...]

    @property
    def pass_rate(self) -> float | None:
        return None if self.graded_count == 0 else self.passed_count / self.graded_count

    def as_json(self) -> dict[str, Any]:
        return {
            "users": [list(row) for row in self.users],
            "exams": [list(row) for row in self.exams],
            "attempts": [list(row) for row in self.attempts],
            "graded_count": self.graded_count,
            "passed_count": self.passed_count,
            "integrity_good_count": self.integrity_good_count,
            "integrity_watch_count": self.integrity_watch_count,
            "integrity_at_risk_count": self.integrity_at_risk_count,
            "integrity_unassessed_count": self.integrity_unassessed_count,
            "flagged_attempt_count": self.flagged_attempt_count,
            "last_hour_event_count": self.last_hour_event_count,
            "last_day_event_count": self.last_day_event_count,
            "daily_event_counts": [[day.isoformat(), n] for day, n in self.daily_event_counts],
        }

    @classmethod
    def from_json(cls, compute_time: datetime, data: dict[str, Any]) -> SystemFigures:
        return cls(
            compute_time=compute_time,
            users=tuple((str(r), bool(a), int(n)) for r, a, n in data["users"]),
            exams=tuple((str(s), int(n)) for s, n in data["exams"]),
            attempts=tuple((str(s), int(n)) for s, n in data["attempts"]),
            graded_count=int(data["graded_count"]),
            passed_count=int(data["passed_count"]),
            integrity_good_count=int(data["integrity_good_count"]),
            integrity_watch_count=int(data["integrity_watch_count"]),
            integrity_at_risk_count=int(data["integrity_at_risk_count"]),
            integrity_unassessed_count=int(data["integrity_unassessed_count"]),
            flagged_attempt_count=int(data["flagged_attempt_count"]),
            last_hour_event_count=int(data["last_hour_event_count"]),
            last_day_event_count=int(data["last_day_event_count"]),
            daily_event_counts=tuple(
                (date.fromisoformat(d), int(n)) for d, n in data["daily_event_counts"]
            ),
        )
