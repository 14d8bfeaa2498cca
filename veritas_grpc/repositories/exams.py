"""Exams, their grants and running figures. Access is decided in the queries: a teacher's
queries only ever see exams they created or were granted."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Row,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, aliased

from veritas_grpc.db.models import (
    Exam,
    ExamAllowance,
    ExamAttempt,
    ExamStats,
    TeacherExamPermission,
)
from veritas_grpc.db.models.joined import AvailableExam, ListedExam, VisibleExam
from veritas_grpc.db.prepared import Prepared
from veritas_grpc.domain.allowances import (
    AllowanceKind,
    ExtraAttempts,
    ExtraTime,
    PersonalWindow,
    Terms,
)
from veritas_grpc.domain.exams import AccessLevel, AttemptStatus, ExamStatus, Figures
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.repositories.conflicts import conflict_on_violation
from veritas_grpc.repositories.keysets import past

EXAM_STATS_COLUMNS = frozenset(c.name for c in ExamStats.__table__.columns) - {"exam_id"}


# Visibility filters compare with the viewer's id as a bound parameter, so that the
# statements holding them are built once per shape (functools.cache below) and only
# their parameters change per call: building and keying a statement per call cost more
# than running it (docs/BENCH_SCALE.md). A statement with a filter is run with
# seen_by(viewer) among its parameters.
VIEWER = "viewer_id"


def seen_by(viewer: Principal) -> dict[str, Any]:
    return {VIEWER: viewer.user_id}


def is_admin(viewer: Principal) -> bool:
    return viewer.role is Role.ADMIN


def _access_level(admin: bool) -> ColumnElement[int]:
    """The viewer's access to Exam as a SQL expression: 2 manage, 1 view, NULL none."""
    if admin:
        return literal(int(AccessLevel.MANAGE))
    granted = (
        select(case((TeacherExamPermission.level == "MANAGE", 2), else_=1))
        .where(
            TeacherExamPermission.exam_id == Exam.id,
            TeacherExamPermission.teacher_id == bindparam(VIEWER),
        )
        .scalar_subquery()
    )
    return case((Exam.created_by == bindparam(VIEWER), 2), else_=granted)


def visible_to(admin: bool) -> ColumnElement[bool]:
    """Whether the viewer (seen_by) may see an exam already found by key or by a join:
    created by them or granted; every exam for an admin. Not for finding the viewer's
    exams among all: the OR cannot be read from an index, so it scans every exam (use
    visible_exam_ids)."""
    if admin:
        return true()
    return or_(Exam.created_by == bindparam(VIEWER), Exam.id.in_(_granted_exam_ids()))


def visible_exam_ids() -> CompoundSelect[Any]:
    """The ids of the exams a teacher (seen_by) may see, for the viewer's listings: each
    half comes from an index (the exams by creator, the grants by teacher), so the
    planner can read the teacher's exams by key instead of scanning them all
    (docs/BENCH_SCALE.md, scripts/bench_visible_exams.py)."""
    created = select(Exam.id).where(Exam.created_by == bindparam(VIEWER))
    return created.union(_granted_exam_ids())


def _granted_exam_ids() -> Select[Any]:
    return select(TeacherExamPermission.exam_id).where(
        TeacherExamPermission.teacher_id == bindparam(VIEWER)
    )


@functools.cache
def _visible_exam(admin: bool, lock: bool) -> Select[Any]:
    query = select(Exam, _access_level(admin).label("access")).where(
        Exam.id == bindparam("exam_id"), visible_to(admin)
    )
    return query.with_for_update(of=Exam) if lock else query


# An exam's figures as a listing reads them, named as ExamStats' attributes: 0 for an exam
# without its row (add writes it with the exam; one written around the server may lack it).
_FIGURES = tuple(
    func.coalesce(ExamStats.__table__.c[name], 0).label(name) for name in sorted(EXAM_STATS_COLUMNS)
)


@functools.cache
def _visible_exams(admin: bool, paged: bool) -> Prepared:
    """Flat rows (ListedExam): 50 exams and their figures as ORM objects cost more
    than the statement (docs/BENCH_SCALE.md). Prepared: the teacher dashboard's."""
    query = select(Exam.__table__, *_FIGURES, _access_level(admin).label("access")).outerjoin(
        ExamStats, ExamStats.exam_id == Exam.id
    )
    if not admin:
        query = query.where(Exam.id.in_(visible_exam_ids()))
    if paged:
        position = (Exam.created_at, Exam.id)
        query = query.where(past(position, ("after_created_at", "after_id"), newest_first=True))
    return Prepared(
        query.order_by(Exam.created_at.desc(), Exam.id.desc()).limit(bindparam("limit"))
    )


_STATS = select(ExamStats).where(ExamStats.exam_id.in_(bindparam("exam_ids", expanding=True)))


def _available(row: Row[Any]) -> AvailableExam:
    standing: list[Terms] = []
    if row.time_id is not None:
        standing.append(ExtraTime(row.extra_minutes, row.extra_percent))
    if row.extra_attempts is not None:
        standing.append(ExtraAttempts(row.extra_attempts))
    if row.window_opens_at is not None:
        standing.append(PersonalWindow(row.window_opens_at, row.window_closes_at))
    return AvailableExam(
        row[0], int(row.used), tuple(standing), bool(row.practised), row.required_practice
    )


class ExamRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # Exams -----------------------------------------------------------------------

    def add(self, exam: Exam) -> Exam:
        """Conflict: the creator made an exam under this request id already (the same
        create request, replayed concurrently)."""
        self._session.add(exam)
        with conflict_on_violation("an exam was created under this request id already"):
            self._session.flush()
        self._session.add(ExamStats(exam_id=exam.id))
        self._session.flush()
        return exam

    def find_created(self, creator_id: uuid.UUID, request_id: str) -> Exam | None:
        return self._session.scalar(
            select(Exam).where(Exam.created_by == creator_id, Exam.create_request_id == request_id)
        )

    def get_visible(
        self, viewer: Principal, exam_id: uuid.UUID, for_update: bool = False
    ) -> VisibleExam | None:
        """The exam with the viewer's access to it, or None if they may not see it."""
        query = _visible_exam(is_admin(viewer), for_update)
        row = self._session.execute(query, {"exam_id": exam_id, **seen_by(viewer)}).one_or_none()
        if row is None:
            return None
        return VisibleExam(row[0], AccessLevel(row.access))

    def get(
        self, exam_id: uuid.UUID, for_update: bool = False, for_share: bool = False
    ) -> Exam | None:
        query = select(Exam).where(Exam.id == exam_id)
        if for_update or for_share:
            query = query.with_for_update(read=for_share and not for_update)
        return self._session.scalar(query)

    def list_visible(
        self, viewer: Principal, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[tuple[VisibleExam, ListedExam]]:
        """Newest first, each with its figures; `after` is the (created_at, id) of the
        previous page's last exam."""
        params = {"limit": limit, **seen_by(viewer)}
        if after is not None:
            params |= {"after_created_at": after[0], "after_id": after[1]}
        listing = _visible_exams(is_admin(viewer), after is not None)
        rows = listing.execute(self._session.connection(), params)
        return [(VisibleExam(row, AccessLevel(row.access)), row) for row in rows]

    def list_available(
        self, student_id: uuid.UUID, now: datetime, after: tuple[str, uuid.UUID] | None, limit: int
    ) -> list[AvailableExam]:
        """Published exams open to the student at `now` (in their personal window if
        they have one, which replaces the exam's, else in the exam's), by title. One
        query: each of the student's standing allowances is one row of the partial
        unique index on (exam, student, kind), joined beside the exam."""
        used = (
            select(func.count())
            .where(ExamAttempt.exam_id == Exam.id, ExamAttempt.student_id == student_id)
            .scalar_subquery()
            .label("used")
        )
        practised = (
            select(ExamAttempt.id)
            .where(
                ExamAttempt.exam_id == Exam.required_practice_exam_id,
                ExamAttempt.student_id == student_id,
                ExamAttempt.status == AttemptStatus.SUBMITTED.value,
            )
            .exists()
            .label("practised")
        )
        # The required practice exam while it is published: an archived one requires
        # nothing (services/attempts.py _require_practice).
        practice = aliased(Exam)
        required = (
            select(practice.id)
            .where(
                practice.id == Exam.required_practice_exam_id,
                practice.status == ExamStatus.PUBLISHED.value,
            )
            .scalar_subquery()
            .label("required_practice")
        )
        time, attempts, window = (aliased(ExamAllowance) for _ in range(3))
        query = select(
            Exam,
            used,
            practised,
            required,
            time.extra_minutes,
            time.extra_percent,
            time.id.label("time_id"),
            attempts.extra_attempts,
            window.window_opens_at,
            window.window_closes_at,
        )
        for alias, kind in (
            (time, AllowanceKind.EXTRA_TIME),
            (attempts, AllowanceKind.EXTRA_ATTEMPTS),
            (window, AllowanceKind.PERSONAL_WINDOW),
        ):
            query = query.outerjoin(
                alias,
                and_(
                    alias.exam_id == Exam.id,
                    alias.student_id == student_id,
                    alias.kind == kind.value,
                    alias.revoked_at.is_(None),
                ),
            )
        in_exam_window = and_(
            window.id.is_(None),
            or_(Exam.opens_at.is_(None), Exam.opens_at <= now),
            or_(Exam.closes_at.is_(None), Exam.closes_at > now),
        )
        in_own_window = and_(window.window_opens_at <= now, window.window_closes_at > now)
        query = query.where(
            Exam.status == ExamStatus.PUBLISHED.value, or_(in_exam_window, in_own_window)
        )
        if after is not None:
            query = query.where(tuple_(Exam.title, Exam.id) > tuple_(*after))
        query = query.order_by(Exam.title, Exam.id).limit(limit)
        return [_available(row) for row in self._session.execute(query)]

    # Figures ---------------------------------------------------------------------

    def stats(self, exam_ids: list[uuid.UUID]) -> dict[uuid.UUID, ExamStats]:
        rows = self._session.scalars(_STATS, {"exam_ids": exam_ids})
        return {row.exam_id: row for row in rows}

    def add_to_stats(self, exam_id: uuid.UUID, delta: Figures) -> None:
        changes = {k: v for k, v in delta.items() if k in EXAM_STATS_COLUMNS}
        if changes:
            table = ExamStats.__table__
            self._session.execute(
                update(ExamStats)
                .where(ExamStats.exam_id == exam_id)
                .values({name: table.c[name] + value for name, value in changes.items()})
            )

    def totals(self) -> dict[str, int]:
        """Every exam's figures added up (one row per exam: cheap next to the attempts)."""
        columns = sorted(EXAM_STATS_COLUMNS - {"score_sum", "integrity_sum"})
        row = self._session.execute(
            select(*(func.coalesce(func.sum(ExamStats.__table__.c[c]), 0) for c in columns))
        ).one()
        return {name: int(value) for name, value in zip(columns, row, strict=True)}

    def most_flagged(self, limit: int) -> list[tuple[uuid.UUID, str, int, int]]:
        query = (
            select(Exam.id, Exam.title, ExamStats.flagged_count, ExamStats.attempt_count)
            .join(ExamStats, ExamStats.exam_id == Exam.id)
            .where(ExamStats.flagged_count > 0)
            .order_by(ExamStats.flagged_count.desc(), Exam.id)
            .limit(limit)
        )
        return [(r[0], r[1], r[2], r[3]) for r in self._session.execute(query)]

    # Grants ----------------------------------------------------------------------

    def grant(
        self, exam_id: uuid.UUID, teacher_id: uuid.UUID, level: AccessLevel, granted_by: uuid.UUID
    ) -> TeacherExamPermission:
        values = {
            "exam_id": exam_id,
            "teacher_id": teacher_id,
            "level": level.name,
            "granted_by": granted_by,
            "granted_at": func.now(),
        }
        statement = (
            insert(TeacherExamPermission)
            .values(values)
            .on_conflict_do_update(
                constraint="uq_teacher_exam_permissions_exam_teacher",
                set_={
                    k: v for k, v in values.items() if k in ("level", "granted_by", "granted_at")
                },
            )
            .returning(TeacherExamPermission)
        )
        return self._session.scalars(statement).one()

    def revoke(self, exam_id: uuid.UUID, teacher_id: uuid.UUID) -> bool:
        result = self._session.execute(
            delete(TeacherExamPermission).where(
                and_(
                    TeacherExamPermission.exam_id == exam_id,
                    TeacherExamPermission.teacher_id == teacher_id,
                )
            )
        )
        return bool(result.rowcount)
