"""Allowances: a student's accommodations at an exam. Repositories flush; the unit of
work commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, delete, select, tuple_
from sqlalchemy.orm import Session

from veritas_grpc.db.models import ExamAllowance, ExamAttempt, User
from veritas_grpc.domain.allowances import Terms
from veritas_grpc.domain.exams import AttemptStatus
from veritas_grpc.repositories.conflicts import conflict_on_violation

_STANDING = ExamAllowance.revoked_at.is_(None)
# Built once: they run in every monitoring view and every event batch.
_OF_STUDENT_AT_EXAM = (ExamAllowance.exam_id == bindparam("exam_id")) & (
    ExamAllowance.student_id == bindparam("student_id")
)
_STANDING_TERMS = select(ExamAllowance).where(_OF_STUDENT_AT_EXAM, _STANDING)
_STANDING_ROWS = _STANDING_TERMS.order_by(ExamAllowance.granted_at, ExamAllowance.id)
_EXEMPT_TYPES = (
    select(ExamAttempt.id, ExamAllowance.exempt_event_types)
    .join(
        ExamAllowance,
        (ExamAllowance.exam_id == ExamAttempt.exam_id)
        & (ExamAllowance.student_id == ExamAttempt.student_id),
    )
    .where(
        ExamAttempt.id.in_(bindparam("attempt_ids", expanding=True)),
        ExamAllowance.exempt_event_types.is_not(None),
        _STANDING | (ExamAllowance.revoked_at > ExamAttempt.started_at),
    )
)


class AllowanceRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def standing(self, exam_id: uuid.UUID, student_id: uuid.UUID) -> list[Terms]:
        """What the student's standing allowances at the exam grant."""
        rows = self._session.scalars(
            _STANDING_TERMS, {"exam_id": exam_id, "student_id": student_id}
        )
        return [row.terms() for row in rows]

    def standing_rows(self, exam_id: uuid.UUID, student_id: uuid.UUID) -> list[ExamAllowance]:
        """The student's standing allowances at the exam, oldest first."""
        params = {"exam_id": exam_id, "student_id": student_id}
        return list(self._session.scalars(_STANDING_ROWS, params))

    def exempt_types_of_attempts(
        self, attempt_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, frozenset[str]]:
        """The event types exempt for each attempt's student at its exam (attempts with
        none are left out). An exemption applies to an attempt unless it was revoked
        before that attempt started: granted at any time it covers the exam's attempts,
        ended ones too, and a revoke changes no attempt already taken under it."""
        rows = self._session.execute(_EXEMPT_TYPES, {"attempt_ids": attempt_ids})
        found: dict[uuid.UUID, frozenset[str]] = {}
        for attempt_id, types in rows:
            found[attempt_id] = found.get(attempt_id, frozenset()) | frozenset(types)
        return found

    def by_request(self, granted_by: uuid.UUID, request_id: str) -> ExamAllowance | None:
        return self._session.scalar(
            select(ExamAllowance).where(
                ExamAllowance.granted_by == granted_by,
                ExamAllowance.grant_request_id == request_id,
            )
        )

    def add(self, allowance: ExamAllowance) -> ExamAllowance:
        """Conflict: a standing allowance of the kind exists, or the request id was
        used (a concurrent grant won)."""
        self._session.add(allowance)
        with conflict_on_violation("a standing allowance of this kind exists"):
            self._session.flush()
        return allowance

    def get(self, allowance_id: uuid.UUID, for_update: bool = False) -> ExamAllowance | None:
        query = select(ExamAllowance).where(ExamAllowance.id == allowance_id)
        if for_update:
            query = query.with_for_update()
        return self._session.scalar(query)

    def revoke(self, allowance: ExamAllowance, by: uuid.UUID, now: datetime) -> None:
        allowance.revoked_at, allowance.revoked_by = now, by
        self._session.flush()

    def page(
        self, exam_id: uuid.UUID, after: tuple[str, uuid.UUID] | None, limit: int
    ) -> list[tuple[ExamAllowance, str]]:
        """The exam's standing allowances with their students' names, by name then id."""
        query = (
            select(ExamAllowance, User.full_name)
            .join(User, User.id == ExamAllowance.student_id)
            .where(ExamAllowance.exam_id == exam_id, _STANDING)
        )
        if after is not None:
            query = query.where(tuple_(User.full_name, ExamAllowance.id) > tuple_(*after))
        query = query.order_by(User.full_name, ExamAllowance.id).limit(limit)
        return [(row[0], row[1]) for row in self._session.execute(query)]

    def of_student(self, student_id: uuid.UUID) -> list[ExamAllowance]:
        """Every allowance of the student, revoked ones too (an export)."""
        query = (
            select(ExamAllowance)
            .where(ExamAllowance.student_id == student_id)
            .order_by(ExamAllowance.granted_at, ExamAllowance.id)
        )
        return list(self._session.scalars(query))

    def erase_student(self, student_id: uuid.UUID) -> int:
        """Delete every allowance of the student (notes may describe a disability)."""
        result = self._session.execute(
            delete(ExamAllowance).where(ExamAllowance.student_id == student_id)
        )
        return int(result.rowcount or 0)

    def running_attempts(self, exam_id: uuid.UUID, student_id: uuid.UUID) -> list[ExamAttempt]:
        """The student's in-progress attempts at the exam, row-locked (a grant moves
        their deadlines)."""
        query = (
            select(ExamAttempt)
            .where(
                ExamAttempt.exam_id == exam_id,
                ExamAttempt.student_id == student_id,
                ExamAttempt.status == AttemptStatus.IN_PROGRESS.value,
            )
            .with_for_update()
        )
        return list(self._session.scalars(query))

    def ended_attempts(self, exam_id: uuid.UUID, student_id: uuid.UUID) -> list[ExamAttempt]:
        """The student's ended attempts at the exam, row-locked, oldest first (a grant
        of an event exemption re-scores them)."""
        query = (
            select(ExamAttempt)
            .where(
                ExamAttempt.exam_id == exam_id,
                ExamAttempt.student_id == student_id,
                ExamAttempt.status != AttemptStatus.IN_PROGRESS.value,
            )
            .order_by(ExamAttempt.started_at, ExamAttempt.id)
            .with_for_update()
        )
        return list(self._session.scalars(query))
