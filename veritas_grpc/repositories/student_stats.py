"""A student's running sums (on the profile) and the figures derived from them."""

from __future__ import annotations

import uuid

from sqlalchemy import case, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from veritas_grpc.db.models import (
    BehaviorAnalysis,
    ExamAttempt,
    PerformanceMetrics,
    StudentProfile,
    User,
)
from veritas_grpc.domain.exams import Figures

# An LMI change smaller than this is STEADY.
TREND_STEP = 0.05
PROFILE_SUMS = {
    "finished_count",
    "graded_count",
    "passed_count",
    "percentage_sum",
    "integrity_count",
    "integrity_sum",
    "flagged_count",
}


class StudentStatsRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, student_id: uuid.UUID, delta: Figures) -> None:
        """Add to the student's sums and refresh the derived figures, in one transaction."""
        changes = {k: v for k, v in delta.items() if k in PROFILE_SUMS}
        if not changes:
            # Refreshing without the profile row locked could write back figures older
            # than a concurrent transaction's: only a transaction that changed the sums
            # (and so holds the row) derives the figures from them.
            return
        table = StudentProfile.__table__
        self._session.execute(
            update(StudentProfile)
            .where(StudentProfile.user_id == student_id)
            .values({name: table.c[name] + value for name, value in changes.items()})
        )
        self.refresh_metrics(student_id)

    def refresh_metrics(self, student_id: uuid.UUID) -> None:
        """performance_metrics from the profile's sums (its LMI and risk label stay)."""
        p = StudentProfile
        derived = select(
            p.user_id,
            p.finished_count,
            p.passed_count,
            case((p.graded_count > 0, func.round(p.percentage_sum / p.graded_count, 2))),
            case((p.integrity_count > 0, func.round(p.integrity_sum / p.integrity_count, 4))),
            p.flagged_count > 0,
        ).where(p.user_id == student_id)
        statement = insert(PerformanceMetrics).from_select(
            [
                "student_id",
                "exams_taken",
                "exams_passed",
                "average_score",
                "average_integrity",
                "flagged",
            ],
            derived,
        )
        excluded = statement.excluded
        self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["student_id"],
                set_={
                    "exams_taken": excluded.exams_taken,
                    "exams_passed": excluded.exams_passed,
                    "average_score": excluded.average_score,
                    "average_integrity": excluded.average_integrity,
                    "flagged": excluded.flagged,
                    "updated_at": literal_column("now()"),
                },
            )
        )

    def _ensure_metrics(self, student_id: uuid.UUID) -> None:
        self._session.execute(
            insert(PerformanceMetrics)
            .values(student_id=student_id)
            .on_conflict_do_nothing(index_elements=["student_id"])
        )

    def set_lmi(self, student_id: uuid.UUID, lmi: float) -> None:
        """The latest LMI, and its trend against the one before."""
        self._ensure_metrics(student_id)
        metrics = PerformanceMetrics.__table__.c
        self._session.execute(
            update(PerformanceMetrics)
            .where(PerformanceMetrics.student_id == student_id)
            .values(
                latest_lmi=lmi,
                lmi_trend=case(
                    (metrics.latest_lmi.is_(None), None),
                    (lmi > metrics.latest_lmi + TREND_STEP, "RISING"),
                    (lmi < metrics.latest_lmi - TREND_STEP, "FALLING"),
                    else_="STEADY",
                ),
            )
        )

    def recompute(self, student_id: uuid.UUID) -> None:
        """The profile's sums from the student's attempts, then the derived figures.
        Practice attempts count in none, as in the running sums."""
        a = ExamAttempt.__table__.c
        sums = select(
            func.count().filter(a.status.in_(("SUBMITTED", "TIMED_OUT"))),
            func.count(a.score),
            func.count().filter(a.passed.is_(True)),
            func.coalesce(func.sum(a.percentage), 0),
            func.count(a.integrity_score),
            func.coalesce(func.sum(a.integrity_score), 0),
            func.count().filter(a.flagged.is_(True)),
        ).where(a.student_id == student_id, ~a.is_practice)
        values = self._session.execute(sums).one()
        names = (
            "finished_count",
            "graded_count",
            "passed_count",
            "percentage_sum",
            "integrity_count",
            "integrity_sum",
            "flagged_count",
        )
        self._session.execute(
            update(StudentProfile)
            .where(StudentProfile.user_id == student_id)
            .values(dict(zip(names, values, strict=True)))
        )
        self.refresh_metrics(student_id)
        self._recompute_from_analyses(student_id)

    def _recompute_from_analyses(self, student_id: uuid.UUID) -> None:
        """LMI, its trend and the risk label from the analysis history, newest first
        (practice attempts' analyses left out: they set neither)."""
        history = (
            select(BehaviorAnalysis.lmi_score, BehaviorAnalysis.dropout_label)
            .join(ExamAttempt, ExamAttempt.id == BehaviorAnalysis.attempt_id)
            .where(ExamAttempt.student_id == student_id, ~ExamAttempt.is_practice)
            .order_by(BehaviorAnalysis.created_at.desc(), BehaviorAnalysis.version.desc())
        )
        lmis = self._session.scalars(
            history.with_only_columns(BehaviorAnalysis.lmi_score)
            .where(BehaviorAnalysis.lmi_score.is_not(None))
            .limit(2)
        ).all()
        label = self._session.scalar(
            history.with_only_columns(BehaviorAnalysis.dropout_label)
            .where(BehaviorAnalysis.dropout_label.is_not(None))
            .limit(1)
        )
        trend = None
        if len(lmis) == 2:
            latest, previous = lmis
            trend = "STEADY"
            if latest > previous + TREND_STEP:
                trend = "RISING"
            elif latest < previous - TREND_STEP:
                trend = "FALLING"
        self._ensure_metrics(student_id)
        self._session.execute(
            update(PerformanceMetrics)
            .where(PerformanceMetrics.student_id == student_id)
            .values(latest_lmi=lmis[0] if lmis else None, lmi_trend=trend, risk_label=label)
        )

    def set_risk_label(self, student_id: uuid.UUID, label: str | None) -> None:
        self._ensure_metrics(student_id)
        self._session.execute(
            update(PerformanceMetrics)
            .where(PerformanceMetrics.student_id == student_id)
            .values(risk_label=label)
        )

    def dashboard(
        self, student_id: uuid.UUID
    ) -> tuple[User, StudentProfile, PerformanceMetrics | None] | None:
        row = self._session.execute(
            select(User, StudentProfile, PerformanceMetrics)
            .join(StudentProfile, StudentProfile.user_id == User.id)
            .outerjoin(PerformanceMetrics, PerformanceMetrics.student_id == User.id)
            .where(User.id == student_id)
        ).one_or_none()
        return None if row is None else (row[0], row[1], row[2])
