"""Everything stored about one student, read for an export and removed by an erasure.

Reads are in pages (events by keyset, in the primary key's order) so that a student with
millions of events is exported with a page of rows in memory at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, text, tuple_, update
from sqlalchemy.orm import Session

from veritas_grpc.db.models import (
    AttemptReview,
    AuthSession,
    BehaviorAnalysis,
    EventReview,
    Exam,
    ExamAllowance,
    ExamAttempt,
    PerformanceMetrics,
    SignInThrottle,
    StudentProfile,
    User,
    attempt_event_tallies,
    erased_subjects,
    exam_alerts,
    monitoring_events,
)

ROWS_PER_READ = 500


def _as_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def _columns(model: Any, *left_out: str) -> list[Any]:
    return [c for c in model.__table__.columns if c.name not in left_out]


class DataSubjectRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # Finding the student -------------------------------------------------------------

    def student_id_by_email(self, email: str) -> uuid.UUID | None:
        return self._session.scalar(
            select(User.id).where(User.email == email.strip().lower(), User.role == "student")
        )

    def student(
        self, user_id: uuid.UUID, for_update: bool = False
    ) -> tuple[User, StudentProfile] | None:
        """A student not erased, with their profile."""
        query = (
            select(User, StudentProfile)
            .join(StudentProfile, StudentProfile.user_id == User.id)
            .where(User.id == user_id, User.role == "student")
            .where(~exists().where(erased_subjects.c.user_id == User.id))
        )
        if for_update:
            query = query.with_for_update(of=[User.__table__, StudentProfile.__table__])
        row = self._session.execute(query).one_or_none()
        return None if row is None else (row[0], row[1])

    # Export ----------------------------------------------------------------------------

    def profile(self, user_id: uuid.UUID) -> dict[str, Any]:
        user = self._session.execute(
            select(*_columns(User, "password_hash")).where(User.id == user_id)
        ).one()
        profile = self._session.execute(
            select(*_columns(StudentProfile, "user_id")).where(StudentProfile.user_id == user_id)
        ).one_or_none()
        metrics = self._session.execute(
            select(*_columns(PerformanceMetrics, "student_id")).where(
                PerformanceMetrics.student_id == user_id
            )
        ).one_or_none()
        return {
            **_as_dict(user),
            "student_profile": _as_dict(profile) if profile else None,
            "performance": _as_dict(metrics) if metrics else None,
        }

    def attempts(self, user_id: uuid.UUID) -> list[dict[str, Any]]:
        """The student's attempts, each with its exam's title (a student has tens)."""
        rows = self._session.execute(
            select(*_columns(ExamAttempt), Exam.title.label("exam_title"))
            .join(Exam, Exam.id == ExamAttempt.exam_id)
            .where(ExamAttempt.student_id == user_id)
            .order_by(ExamAttempt.started_at, ExamAttempt.id)
        )
        return [_as_dict(row) for row in rows]

    def allowances(self, user_id: uuid.UUID) -> list[dict[str, Any]]:
        """The student's allowances, revoked ones too, each with its exam's title."""
        rows = self._session.execute(
            select(*_columns(ExamAllowance), Exam.title.label("exam_title"))
            .join(Exam, Exam.id == ExamAllowance.exam_id)
            .where(ExamAllowance.student_id == user_id)
            .order_by(ExamAllowance.granted_at, ExamAllowance.id)
        )
        return [_as_dict(row) for row in rows]

    def attempt_ids(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        return list(
            self._session.scalars(
                select(ExamAttempt.id)
                .where(ExamAttempt.student_id == user_id)
                .order_by(ExamAttempt.id)
            )
        )

    def events_page(
        self, attempt_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[dict[str, Any]]:
        """One page of an attempt's events in (occurred_at, event_id) order, after a
        keyset position: the primary key's index, partition by partition."""
        e = monitoring_events.c
        query = select(monitoring_events).where(e.attempt_id == attempt_id)
        if after is not None:
            query = query.where(tuple_(e.occurred_at, e.event_id) > after)
        query = query.order_by(e.occurred_at, e.event_id).limit(limit)
        return [_as_dict(row) for row in self._session.execute(query)]

    def analyses(self, attempt_ids: list[uuid.UUID]) -> Iterator[dict[str, Any]]:
        """Every saved analysis of the attempts, with its reasoning (not who saved it:
        the scoring service's account is not the student's data)."""
        query = (
            select(*_columns(BehaviorAnalysis, "created_by"))
            .where(BehaviorAnalysis.attempt_id.in_(attempt_ids))
            .order_by(BehaviorAnalysis.attempt_id, BehaviorAnalysis.version)
        )
        yield from self._paged(query, attempt_ids)

    def reviews(self, attempt_ids: list[uuid.UUID]) -> Iterator[dict[str, Any]]:
        """Reviewers' decisions on the attempts and their events, without the reviewer's
        identity (another person's data)."""
        for model, scope in ((AttemptReview, "attempt"), (EventReview, "event")):
            query = (
                select(*_columns(model, "reviewer_id"))
                .where(model.attempt_id.in_(attempt_ids))
                .order_by(model.reviewed_at, model.id)
            )
            for row in self._paged(query, attempt_ids):
                yield {"scope": scope, **row}

    def _paged(self, query: Any, attempt_ids: list[uuid.UUID]) -> Iterator[dict[str, Any]]:
        if not attempt_ids:
            return
        offset = 0
        while True:
            rows = [
                _as_dict(r)
                for r in self._session.execute(query.offset(offset).limit(ROWS_PER_READ))
            ]
            yield from rows
            if len(rows) < ROWS_PER_READ:
                return
            offset += len(rows)

    # Erasure ---------------------------------------------------------------------------

    def attempts_for_update(self, user_id: uuid.UUID) -> list[ExamAttempt]:
        """Every attempt of the student, locked in id order (the order every writer
        locks attempts in), so that nothing is written to them while they are erased."""
        return list(
            self._session.scalars(
                select(ExamAttempt)
                .where(ExamAttempt.student_id == user_id)
                .order_by(ExamAttempt.id)
                .with_for_update()
            )
        )

    def delete_events(self, attempt_ids: list[uuid.UUID]) -> int:
        if not attempt_ids:
            return 0
        e = monitoring_events.c
        result = self._session.execute(
            delete(monitoring_events).where(e.attempt_id.in_(attempt_ids))
        )
        t = attempt_event_tallies.c
        self._session.execute(delete(attempt_event_tallies).where(t.attempt_id.in_(attempt_ids)))
        exams = select(ExamAttempt.exam_id).where(ExamAttempt.id.in_(attempt_ids)).distinct()
        a = exam_alerts.c
        self._session.execute(
            delete(exam_alerts).where(a.exam_id.in_(exams), a.attempt_id.in_(attempt_ids))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def delete_analyses(self, attempt_ids: list[uuid.UUID]) -> int:
        result = self._session.execute(
            delete(BehaviorAnalysis).where(BehaviorAnalysis.attempt_id.in_(attempt_ids))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def delete_reviews(self, attempt_ids: list[uuid.UUID]) -> int:
        total = 0
        for model in (AttemptReview, EventReview):
            result = self._session.execute(delete(model).where(model.attempt_id.in_(attempt_ids)))
            total += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return total

    def clear_attempt_evidence(self, attempt_ids: list[uuid.UUID]) -> int:
        """The attempts' counters of what was erased (events, reviews) back to zero; their
        figures (status, score, integrity, label, flag) stay, anonymous."""
        result = self._session.execute(
            update(ExamAttempt)
            .where(ExamAttempt.id.in_(attempt_ids))
            .values(
                event_count=0,
                anomaly_count=0,
                critical_count=0,
                review_outcome=None,
                confirmed_events=0,
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def delete_sign_ins(self, user_id: uuid.UUID, email: str) -> None:
        """Sessions (their refresh tokens go with them: every access token dies at its
        next check), set-password tokens, and the throttle buckets named by the e-mail."""
        self._session.execute(delete(AuthSession).where(AuthSession.user_id == user_id))
        if self._session.scalar(text("SELECT to_regclass('set_password_tokens')")) is not None:
            self._session.execute(
                text("DELETE FROM set_password_tokens WHERE user_id = :user"), {"user": user_id}
            )
        self._session.execute(
            delete(SignInThrottle).where(
                (SignInThrottle.subject == email)
                | (func.left(SignInThrottle.subject, len(email) + 1) == email + " ")
            )
        )

    def anonymize(
        self, user_id: uuid.UUID, email: str, password_hash: str, enrollment_id: str
    ) -> None:
        """The account becomes an anonymous shell (the attempts reference it)."""
        self._session.execute(
            update(User)
            .where(User.id == user_id)
            .values(email=email, full_name="", password_hash=password_hash, is_active=False)
        )
        self._session.execute(
            update(StudentProfile)
            .where(StudentProfile.user_id == user_id)
            .values(enrollment_id=enrollment_id)
        )

    def mark_erased(self, user_id: uuid.UUID, pseudonym: str) -> None:
        self._session.execute(insert(erased_subjects).values(user_id=user_id, pseudonym=pseudonym))
