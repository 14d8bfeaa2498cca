"""Exams as teachers and students see them, their figures and their grants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from veritas_grpc.db.models import ExamStats, TeacherExamPermission
from veritas_grpc.db.models.joined import AvailableExam, ListedExam, VisibleExam
from veritas_grpc.domain.allowances import Accommodations
from veritas_grpc.domain.exams import (
    CENT,
    TEN_THOUSANDTH,
    AccessLevel,
    BehaviorRule,
    ExamStatus,
    attempts_left,
    behavior_rules_locked,
    mean,
    rules_in,
)


@dataclass(frozen=True)
class ExamView:
    """An exam as one teacher sees it: with their access to it."""

    id: uuid.UUID
    title: str
    subject: str
    description: str
    max_points: Decimal
    pass_points: Decimal
    duration_minutes: int
    open_time: datetime | None
    close_time: datetime | None
    max_attempts: int
    status: ExamStatus
    behavior_rules: tuple[BehaviorRule, ...]
    behavior_rules_locked: bool
    creator_id: uuid.UUID
    access: AccessLevel
    create_time: datetime
    update_time: datetime
    publish_time: datetime | None
    practice: bool
    required_practice_exam_id: uuid.UUID | None


def exam_view(visible: VisibleExam, attempt_count: int) -> ExamView:
    """attempt_count: the exam's attempts so far (they lock its behaviour rules)."""
    exam = visible.exam
    return ExamView(
        id=exam.id,
        title=exam.title,
        subject=exam.subject,
        description=exam.description,
        max_points=exam.max_score,
        pass_points=exam.pass_score,
        duration_minutes=exam.duration_minutes,
        open_time=exam.opens_at,
        close_time=exam.closes_at,
        max_attempts=exam.max_attempts,
        status=ExamStatus(exam.status),
        behavior_rules=tuple(rules_in(exam.settings)),
        behavior_rules_locked=behavior_rules_locked(attempt_count),
        creator_id=exam.created_by,
        access=visible.access,
        create_time=exam.created_at,
        update_time=exam.updated_at,
        publish_time=exam.published_at,
        practice=exam.is_practice,
        required_practice_exam_id=exam.required_practice_exam_id,
    )


@dataclass(frozen=True)
class LabelCounts:
    """Attempts per dropout label."""

    safe: int
    incapable: int
    copy: int
    no_interest: int


@dataclass(frozen=True)
class ExamAnalyticsView:
    """An exam's figures; the means and the pass rate are None before anything counts."""

    attempt_count: int
    student_count: int
    mean_points: Decimal | None
    pass_rate: float | None  # of the graded attempts
    mean_integrity_score: Decimal | None
    high_risk_count: int
    flagged_count: int
    by_label: LabelCounts


def analytics_view(stats: ExamStats | ListedExam) -> ExamAnalyticsView:
    graded = stats.graded_count
    return ExamAnalyticsView(
        attempt_count=stats.attempt_count,
        student_count=stats.student_count,
        mean_points=mean(stats.score_sum, graded, CENT),
        pass_rate=stats.passed_count / graded if graded else None,
        mean_integrity_score=mean(stats.integrity_sum, stats.integrity_count, TEN_THOUSANDTH),
        high_risk_count=stats.high_risk_count,
        flagged_count=stats.flagged_count,
        by_label=LabelCounts(
            safe=stats.safe_count,
            incapable=stats.incapable_count,
            copy=stats.copy_count,
            no_interest=stats.no_interest_count,
        ),
    )


@dataclass(frozen=True)
class GrantView:
    exam_id: uuid.UUID
    teacher_id: uuid.UUID
    level: AccessLevel
    granter_id: uuid.UUID
    grant_time: datetime


def grant_view(grant: TeacherExamPermission) -> GrantView:
    return GrantView(
        exam_id=grant.exam_id,
        teacher_id=grant.teacher_id,
        level=AccessLevel[grant.level],
        granter_id=grant.granted_by,
        grant_time=grant.granted_at,
    )


@dataclass(frozen=True)
class AvailableExamView:
    """A published exam open to the student, as they see it: their window, their
    extra time and attempts, the attempts they have left (never an allowance's note)."""

    exam_id: uuid.UUID
    title: str
    subject: str
    description: str
    max_points: Decimal
    pass_points: Decimal
    duration_minutes: int
    open_time: datetime | None
    close_time: datetime | None
    max_attempts: int
    used_attempt_count: int
    remaining_attempt_count: int
    practice: bool
    extra_time_minutes: int
    extra_attempt_count: int
    required_practice_exam_id: uuid.UUID | None
    required_practice_completed: bool


def available_exam_view(available: AvailableExam) -> AvailableExamView:
    exam, used = available.exam, available.used_attempts
    allowed = Accommodations.of(available.standing)
    open_time, close_time = allowed.window_of(exam.opens_at, exam.closes_at)
    return AvailableExamView(
        exam_id=exam.id,
        title=exam.title,
        subject=exam.subject,
        description=exam.description,
        max_points=exam.max_score,
        pass_points=exam.pass_score,
        duration_minutes=exam.duration_minutes,
        open_time=open_time,
        close_time=close_time,
        max_attempts=exam.max_attempts,
        used_attempt_count=used,
        remaining_attempt_count=attempts_left(allowed.attempts_allowed(exam.max_attempts), used),
        practice=exam.is_practice,
        extra_time_minutes=allowed.extra_minutes(exam.duration_minutes),
        extra_attempt_count=allowed.extra_attempts,
        required_practice_exam_id=available.required_practice_id,
        required_practice_completed=available.required_practice_id is not None
        and available.practice_completed,
    )
