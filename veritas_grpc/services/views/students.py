"""Students' profiles and figures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from veritas_grpc.db.models import PerformanceMetrics, StudentProfile, User
from veritas_grpc.domain.exams import DropoutLabel, IntegrityStatus, Trend, integrity_status


@dataclass(frozen=True)
class StudentProfileView:
    id: uuid.UUID
    full_name: str
    enrollment_id: str
    join_time: datetime


def profile_view(user: User, profile: StudentProfile) -> StudentProfileView:
    return StudentProfileView(user.id, user.full_name, profile.enrollment_id, profile.joined_at)


@dataclass(frozen=True)
class PerformanceView:
    """A student's figures; the defaults are those of a student with none yet."""

    finished_attempt_count: int = 0
    passed_attempt_count: int = 0
    mean_score_percent: Decimal | None = None
    mean_integrity_score: Decimal | None = None
    integrity_status: IntegrityStatus | None = None
    learning_momentum_index: float | None = None
    momentum_status: Trend | None = None
    dropout_label: DropoutLabel | None = None
    flagged: bool = False


def performance_view(metrics: PerformanceMetrics | None) -> PerformanceView:
    if metrics is None:
        return PerformanceView()
    return PerformanceView(
        finished_attempt_count=metrics.exams_taken,
        passed_attempt_count=metrics.exams_passed,
        mean_score_percent=metrics.average_score,
        mean_integrity_score=metrics.average_integrity,
        integrity_status=integrity_status(metrics.average_integrity),
        learning_momentum_index=metrics.latest_lmi,
        momentum_status=Trend(metrics.lmi_trend) if metrics.lmi_trend else None,
        dropout_label=DropoutLabel(metrics.risk_label) if metrics.risk_label else None,
        flagged=bool(metrics.flagged),
    )
