"""Read models: the student's dashboard, the teacher's dashboard, exam analytics, a
student's detail and flagged attempts. They read the denormalised figures, never
aggregate raw events, and every read of students' data by staff is audited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from veritas_grpc.db.models import ExamAttempt, ExamStats, PerformanceMetrics, StudentProfile, User
from veritas_grpc.db.models.joined import AttemptInContext, VisibleExam
from veritas_grpc.domain.errors import NotFound
from veritas_grpc.domain.exams import CENT, TEN_THOUSANDTH, AccessLevel, AttemptStatus, mean
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.services import auditing
from veritas_grpc.services.exams import require_exam
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory

HISTORY_LIMIT = 50
DASHBOARD_EXAMS = 50
RECENT_ALERTS = 20
DETAIL_ATTEMPTS = 200


@dataclass(frozen=True)
class StudentDashboard:
    user: User
    profile: StudentProfile
    metrics: PerformanceMetrics | None
    history: list[AttemptInContext]


@dataclass(frozen=True)
class ExamOverview:
    visible: VisibleExam
    stats: ExamStats


@dataclass(frozen=True)
class TeacherDashboard:
    exams: list[ExamOverview]
    alerts: list[AttemptInContext]


@dataclass(frozen=True)
class StudentAttempts:
    student_id: uuid.UUID
    name: str
    attempts: list[ExamAttempt]


@dataclass(frozen=True)
class ExamAnalytics:
    overview: ExamOverview
    students: Page[StudentAttempts]


@dataclass(frozen=True)
class StudentDetail:
    user: User
    profile: StudentProfile
    metrics: PerformanceMetrics | None
    attempts: list[AttemptInContext]


def _figures_over(attempts: list[ExamAttempt]) -> PerformanceMetrics:
    """A student's figures over some of their attempts (never stored)."""
    graded = [a.percentage for a in attempts if a.percentage is not None]
    assessed = [a.integrity_score for a in attempts if a.integrity_score is not None]
    return PerformanceMetrics(
        exams_taken=sum(AttemptStatus(a.status).gradable for a in attempts),
        exams_passed=sum(bool(a.passed) for a in attempts),
        average_score=mean(sum(graded, Decimal(0)), len(graded), CENT),
        average_integrity=mean(sum(assessed, Decimal(0)), len(assessed), TEN_THOUSANDTH),
        flagged=any(a.flagged for a in attempts),
    )


def _audit_read(
    uow: UnitOfWork, actor: Principal, action: str, resource_type: str, resource_id: object
) -> None:
    auditing.record(
        uow, action, "success", actor=actor, resource_type=resource_type, resource_id=resource_id
    )


class DashboardService:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def student_dashboard(self, student: Principal) -> StudentDashboard:
        with self._uow_factory() as uow:
            found = uow.student_stats.dashboard(student.user_id)
            if found is None:
                raise NotFound("student profile not found")
            user, profile, metrics = found
            history = uow.attempts.history(student.user_id, HISTORY_LIMIT)
            return StudentDashboard(user, profile, metrics, history)

    def teacher_dashboard(self, actor: Principal) -> TeacherDashboard:
        with self._uow_factory() as uow:
            exams = uow.exams.list_visible(actor, None, DASHBOARD_EXAMS)
            stats = uow.exams.stats([v.exam.id for v in exams])
            alerts = uow.attempts.recent_flags(actor, RECENT_ALERTS)
            if alerts:
                _audit_read(uow, actor, "teacher.read_alerts", "teacher", actor.user_id)
                uow.commit()
            overviews = [ExamOverview(v, stats[v.exam.id]) for v in exams]
            return TeacherDashboard(overviews, alerts)

    def exam_analytics(
        self, actor: Principal, exam_id: str, page_size: int, page_token: str
    ) -> ExamAnalytics:
        exam_uuid = parse_id(exam_id, "exam_id")
        request = page_request(page_size, page_token, f"analytics:{exam_uuid}")
        after = position(request, str, uuid.UUID)
        with self._uow_factory() as uow:
            visible = require_exam(uow, actor, exam_uuid, AccessLevel.VIEW)
            stats = uow.exams.stats([exam_uuid])[exam_uuid]
            students = uow.attempts.students_page(exam_uuid, after, request.size + 1)
            page = paginate(students, request, lambda student: (student[1], student[0]))
            attempts = uow.attempts.of_students(exam_uuid, [sid for sid, _ in page.items])
            by_student: dict[uuid.UUID, list[ExamAttempt]] = {}
            for attempt in attempts:
                by_student.setdefault(attempt.student_id, []).append(attempt)
            rows = [StudentAttempts(sid, name, by_student.get(sid, [])) for sid, name in page.items]
            _audit_read(uow, actor, "exam.read_analytics", "exam", exam_uuid)
            uow.commit()
        return ExamAnalytics(ExamOverview(visible, stats), Page(rows, page.next_token))

    def student_detail(self, actor: Principal, student_id: str) -> StudentDetail:
        student_uuid = parse_id(student_id, "student_id")
        with self._uow_factory() as uow:
            found = uow.student_stats.dashboard(student_uuid)
            attempts = uow.attempts.on_visible_exams(actor, student_uuid, DETAIL_ATTEMPTS)
            # Without an attempt on an exam the teacher may see, the student is none of
            # their business: as absent as a student who does not exist.
            if found is None or (not attempts and actor.role is not Role.ADMIN):
                raise NotFound("student not found")
            _audit_read(uow, actor, "student.read_detail", "user", student_uuid)
            uow.commit()
            user, profile, metrics = found
            if actor.role is not Role.ADMIN:
                # A teacher sees figures over the exams they may see, not the student's
                # results (labels, LMI) on other teachers' exams.
                metrics = _figures_over([found.attempt for found in attempts])
            return StudentDetail(user, profile, metrics, attempts)

    def flagged(
        self, actor: Principal, exam_id: str, page_size: int, page_token: str
    ) -> Page[AttemptInContext]:
        exam_uuid = parse_id(exam_id, "exam_id")
        request = page_request(page_size, page_token, f"flagged:{exam_uuid}")
        after = position(request, datetime.fromisoformat, uuid.UUID)
        with self._uow_factory() as uow:
            require_exam(uow, actor, exam_uuid, AccessLevel.VIEW)
            rows = uow.attempts.flagged_page(exam_uuid, after, request.size + 1)
            _audit_read(uow, actor, "exam.read_flagged", "exam", exam_uuid)
            uow.commit()
        return paginate(rows, request, lambda r: (r.attempt.flagged_at.isoformat(), r.attempt.id))
