"""Exam attempts. Reads that serve one student filter on that student in the query."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    exists,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from veritas_grpc.db.models import Exam, ExamAttempt, User, erased_subjects, exam_students
from veritas_grpc.db.models.joined import AttemptInContext, AttemptRow, ListedAttempt
from veritas_grpc.db.prepared import Prepared
from veritas_grpc.domain.exams import AttemptStatus
from veritas_grpc.domain.identity import Principal
from veritas_grpc.repositories.conflicts import conflict_on_violation
from veritas_grpc.repositories.exams import is_admin, seen_by, visible_exam_ids, visible_to
from veritas_grpc.repositories.keysets import past

# Events reach an attempt until the late grace after its end, and their occur_time may
# be up to the skew past their arrival: each at most an hour (config.py's bounds).
LATEST_EVENT_AFTER_END = timedelta(hours=2)


def practice_attempt_ids(events_since: datetime) -> Select[tuple[uuid.UUID]]:
    """Practice attempts that may have events occurring or arriving at or after
    events_since: running ones and those ended not long before (the partial index of
    migration 0017 holds only practice attempts). Figures over events subtract theirs."""
    a = ExamAttempt
    return select(a.id).where(
        a.is_practice,
        or_(a.ended_at.is_(None), a.ended_at >= events_since - LATEST_EVENT_AFTER_END),
    )


# Flag filters say `flagged`, not `flagged IS TRUE`: only the bare column matches the
# partial indexes' WHERE flagged (the planner cannot prove the one from the other).


def _in_context():  # type: ignore[no-untyped-def]
    return (
        select(ExamAttempt, Exam, User.full_name)
        .join(Exam, Exam.id == ExamAttempt.exam_id)
        .join(User, User.id == ExamAttempt.student_id)
    )


def _wrap(rows) -> list[AttemptInContext]:  # type: ignore[no-untyped-def]
    return [AttemptInContext(row[0], row[1], row[2]) for row in rows]


def listed_attempts() -> Select[Any]:
    """Attempts as listings read them (ListedAttempt)."""
    return (
        select(ExamAttempt.__table__, Exam.title, Exam.max_score, User.full_name)
        .join(Exam, Exam.id == ExamAttempt.exam_id)
        .join(User, User.id == ExamAttempt.student_id)
    )


@functools.cache
def _history(admin: bool | None) -> Prepared:
    """A student's attempts, newest first: all of them (admin None), or those on the
    exams the viewer (seen_by) may see. Prepared: the student dashboard's."""
    query = listed_attempts().where(
        ExamAttempt.student_id == bindparam("student_id"), ~ExamAttempt.is_practice
    )
    if admin is not None:
        query = query.where(visible_to(admin))
    newest = (ExamAttempt.started_at.desc(), ExamAttempt.id.desc())
    return Prepared(query.order_by(*newest).limit(bindparam("limit")))


_NEWEST_FLAGS = (ExamAttempt.flagged_at.desc(), ExamAttempt.id.desc())
_ALL_RECENT_FLAGS = (
    listed_attempts().where(ExamAttempt.flagged).order_by(*_NEWEST_FLAGS).limit(bindparam("limit"))
)


def _latest_flagged_per_exam() -> Select[Any]:
    exams = visible_exam_ids().subquery()
    per_exam = (
        select(ExamAttempt.id, ExamAttempt.flagged_at)
        .where(ExamAttempt.exam_id == exams.c.id, ExamAttempt.flagged)
        .order_by(*_NEWEST_FLAGS)
        .limit(bindparam("limit"))
        .lateral()
    )
    return (
        select(per_exam.c.id)
        .select_from(exams)
        .join(per_exam, true())
        .order_by(per_exam.c.flagged_at.desc(), per_exam.c.id.desc())
        .limit(bindparam("limit"))
    )


# One statement: the latest per visible exam (a LATERAL on the exam's flagged index), the
# newest `limit` of those, then read by key. Prepared: half its time was planning. (The
# admin's, over every flagged attempt, is not: its best plan depends on the limit.)
_RECENT_FLAGS = Prepared(
    listed_attempts()
    .where(ExamAttempt.id.in_(_latest_flagged_per_exam().scalar_subquery()))
    .order_by(*_NEWEST_FLAGS)
    .limit(bindparam("limit"))
)


@functools.cache
def _by_id(own: bool, lock: bool) -> Select[Any]:
    """One attempt in context; own: only if it is the student's."""
    query = _in_context().where(ExamAttempt.id == bindparam("attempt_id"))
    if own:
        query = query.where(ExamAttempt.student_id == bindparam("student_id"))
    return query.with_for_update(of=ExamAttempt) if lock else query


@functools.cache
def _students_page(paged: bool) -> Select[Any]:
    students = exam_students.c
    query = select(students.student_id, students.full_name).where(
        students.exam_id == bindparam("exam_id")
    )
    if paged:
        position = (students.full_name, students.student_id)
        query = query.where(past(position, ("after_name", "after_id")))
    return query.order_by(students.full_name, students.student_id).limit(bindparam("limit"))


_OF_STUDENTS = (
    select(ExamAttempt.__table__)
    .where(
        ExamAttempt.exam_id == bindparam("exam_id"),
        ExamAttempt.student_id.in_(bindparam("student_ids", expanding=True)),
    )
    .order_by(ExamAttempt.student_id, ExamAttempt.attempt_number)
)


@functools.cache
def _flagged_page(paged: bool) -> Select[Any]:
    query = listed_attempts().where(
        ExamAttempt.exam_id == bindparam("exam_id"), ExamAttempt.flagged
    )
    if paged:
        position = (ExamAttempt.flagged_at, ExamAttempt.id)
        query = query.where(past(position, ("after_flagged_at", "after_id"), newest_first=True))
    return query.order_by(*_NEWEST_FLAGS).limit(bindparam("limit"))


class AttemptRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, attempt: ExamAttempt) -> ExamAttempt:
        """Conflict: the student has this attempt number, or one in progress, already
        (a concurrent start won: the unique indexes let exactly one in)."""
        self._session.add(attempt)
        with conflict_on_violation("an attempt at this exam is already in progress"):
            self._session.flush()
        return attempt

    def completed(self, student_id: uuid.UUID, exam_id: uuid.UUID) -> bool:
        """Whether the student submitted an attempt at the exam (a required practice)."""
        query = select(ExamAttempt.id).where(
            ExamAttempt.student_id == student_id,
            ExamAttempt.exam_id == exam_id,
            ExamAttempt.status == AttemptStatus.SUBMITTED.value,
        )
        return self._session.scalar(query.limit(1)) is not None

    def count_for(self, student_id: uuid.UUID, exam_id: uuid.UUID) -> int:
        return int(
            self._session.scalar(
                select(func.count()).where(
                    ExamAttempt.student_id == student_id, ExamAttempt.exam_id == exam_id
                )
            )
            or 0
        )

    def get_in_context(
        self, attempt_id: uuid.UUID, for_update: bool = False
    ) -> AttemptInContext | None:
        rows = _wrap(self._session.execute(_by_id(False, for_update), {"attempt_id": attempt_id}))
        return rows[0] if rows else None

    def get_own(
        self, student_id: uuid.UUID, attempt_id: uuid.UUID, for_update: bool = False
    ) -> AttemptInContext | None:
        """The attempt if it is the student's: someone else's is as absent as a missing one."""
        params = {"attempt_id": attempt_id, "student_id": student_id}
        rows = _wrap(self._session.execute(_by_id(True, for_update), params))
        return rows[0] if rows else None

    def finish(self, attempt: ExamAttempt, status: AttemptStatus, now: datetime) -> bool:
        """IN_PROGRESS -> status, only if still in progress (a concurrent finish loses)."""
        result = self._session.execute(
            update(ExamAttempt)
            .where(ExamAttempt.id == attempt.id, ExamAttempt.status == AttemptStatus.IN_PROGRESS)
            .values(status=status.value, ended_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:
            # The row already says so: update the loaded object without a second write.
            set_committed_value(attempt, "status", status.value)
            set_committed_value(attempt, "ended_at", now)
        return bool(result.rowcount)

    def history(self, student_id: uuid.UUID, limit: int) -> list[ListedAttempt]:
        params = {"student_id": student_id, "limit": limit}
        return list(_history(None).execute(self._session.connection(), params))

    def on_visible_exams(
        self, viewer: Principal, student_id: uuid.UUID, limit: int
    ) -> list[ListedAttempt]:
        params = {"student_id": student_id, "limit": limit, **seen_by(viewer)}
        return list(_history(is_admin(viewer)).execute(self._session.connection(), params))

    def students_page(
        self, exam_id: uuid.UUID, after: tuple[str, uuid.UUID] | None, limit: int
    ) -> list[tuple[uuid.UUID, str]]:
        """The exam's students (those with a non-practice attempt), by name then id,
        starting after `after`: a page of the exam's roster (migration 0020)."""
        params: dict[str, object] = {"exam_id": exam_id, "limit": limit}
        if after is not None:
            params |= {"after_name": after[0], "after_id": after[1]}
        rows = self._session.execute(_students_page(after is not None), params)
        return [(row.student_id, row.full_name) for row in rows]

    def of_students(self, exam_id: uuid.UUID, student_ids: list[uuid.UUID]) -> list[AttemptRow]:
        """The students' attempts at the exam."""
        params = {"exam_id": exam_id, "student_ids": student_ids}
        return list(self._session.execute(_OF_STUDENTS, params))

    def flagged_page(
        self, exam_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ListedAttempt]:
        params: dict[str, object] = {"exam_id": exam_id, "limit": limit}
        if after is not None:
            params |= {"after_flagged_at": after[0], "after_id": after[1]}
        return list(self._session.execute(_flagged_page(after is not None), params))

    def recent_flags(self, viewer: Principal, limit: int) -> list[ListedAttempt]:
        """The latest flagged attempts on the exams the viewer may see. A teacher's are
        found per exam, the latest `limit` of each from the exam's flagged index, then
        read by key, in one statement: one filter over every flagged attempt made the
        planner scan all attempts (0.5 s at 1,000,000, docs/BENCH_SCALE.md)."""
        if is_admin(viewer):
            return list(self._session.execute(_ALL_RECENT_FLAGS, {"limit": limit}))
        params = {"limit": limit, **seen_by(viewer)}
        return list(_RECENT_FLAGS.execute(self._session.connection(), params))

    def overdue_for_update(self, now: datetime, grace: timedelta, limit: int) -> list[ExamAttempt]:
        """In-progress attempts past deadline + grace, row-locked; rows another sweeper
        holds are skipped, so concurrent sweeps never time an attempt out twice."""
        query = (
            select(ExamAttempt)
            .where(
                ExamAttempt.status == AttemptStatus.IN_PROGRESS.value,
                ExamAttempt.deadline_at < now - grace,
            )
            .order_by(ExamAttempt.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self._session.scalars(query))

    def try_sweep_lock(self) -> bool:
        """A transaction-scoped advisory lock: one sweep at a time across processes."""
        return bool(self._session.scalar(text("SELECT pg_try_advisory_xact_lock(7254001)")))

    def with_exams(self, attempt_ids: list[uuid.UUID]) -> list[tuple[ExamAttempt, Exam]]:
        """The attempts events may be written to, with their exams: an erased
        student's are left out (their events would be new personal data)."""
        query = (
            select(ExamAttempt, Exam)
            .join(Exam, Exam.id == ExamAttempt.exam_id)
            .where(ExamAttempt.id.in_(attempt_ids))
            .where(~exists().where(erased_subjects.c.user_id == ExamAttempt.student_id))
        )
        return [(row[0], row[1]) for row in self._session.execute(query)]
