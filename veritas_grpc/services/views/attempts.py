"""Attempts, on their own and with the names around them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from veritas_grpc.db.models import ExamAttempt
from veritas_grpc.db.models.joined import AttemptInContext, AttemptRow, ListedAttempt
from veritas_grpc.domain.exams import AttemptStatus, DropoutLabel, IntegrityStatus, integrity_status


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt's own values; score and integrity are None until graded or assessed."""

    id: uuid.UUID
    exam_id: uuid.UUID
    student_id: uuid.UUID
    attempt_number: int
    status: AttemptStatus
    points: Decimal | None
    score_percent: Decimal | None
    passed: bool | None
    integrity_score: Decimal | None
    integrity_status: IntegrityStatus | None
    dropout_label: DropoutLabel | None
    flagged: bool
    event_count: int
    anomaly_count: int
    critical_count: int
    start_time: datetime
    # Start + duration + extra_time_minutes, capped by the close of the student's window.
    deadline_time: datetime
    extra_time_minutes: int
    end_time: datetime | None
    flag_time: datetime | None
    grade_time: datetime | None
    # An attempt at a practice exam: counted in no figure.
    practice: bool


def attempt_record(attempt: ExamAttempt | AttemptRow) -> AttemptRecord:
    return AttemptRecord(
        id=attempt.id,
        exam_id=attempt.exam_id,
        student_id=attempt.student_id,
        attempt_number=attempt.attempt_number,
        status=AttemptStatus(attempt.status),
        points=attempt.score,
        score_percent=attempt.percentage,
        passed=attempt.passed,
        integrity_score=attempt.integrity_score,
        integrity_status=integrity_status(attempt.integrity_score),
        dropout_label=DropoutLabel(attempt.dropout_label) if attempt.dropout_label else None,
        flagged=attempt.flagged,
        event_count=attempt.event_count,
        anomaly_count=attempt.anomaly_count,
        critical_count=attempt.critical_count,
        start_time=attempt.started_at,
        deadline_time=attempt.deadline_at,
        extra_time_minutes=attempt.extra_minutes,
        end_time=attempt.ended_at,
        flag_time=attempt.flagged_at,
        grade_time=attempt.graded_at,
        practice=attempt.is_practice,
    )


@dataclass(frozen=True)
class AttemptView:
    """An attempt with its exam's title and points and its student's name: what the
    teachers' and the student's messages about one attempt draw on (each takes what its
    reader may see)."""

    attempt: AttemptRecord
    exam_title: str
    max_points: Decimal
    student_name: str


def attempt_view(found: AttemptInContext) -> AttemptView:
    return AttemptView(
        attempt=attempt_record(found.attempt),
        exam_title=found.exam.title,
        max_points=found.exam.max_score,
        student_name=found.student_name,
    )


def listed_view(row: ListedAttempt) -> AttemptView:
    return AttemptView(
        attempt=attempt_record(row),
        exam_title=row.title,
        max_points=row.max_score,
        student_name=row.full_name,
    )


@dataclass(frozen=True)
class StudentAttemptsView:
    """One student's attempts at an exam (exam analytics)."""

    student_id: uuid.UUID
    name: str
    attempts: tuple[AttemptRecord, ...]
