"""Read models: the student's dashboard, the teacher's dashboard, exam analytics, a
student's detail and flagged attempts. They read the denormalised figures, never
aggregate raw events, and every read of students' data by staff is audited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from veritas_grpc.db.models import ExamStats
from veritas_grpc.db.models.joined import ListedAttempt, ListedExam, VisibleExam
from veritas_grpc.domain.errors import NotFound
from veritas_grpc.domain.exams import (
    CENT,
    TEN_THOUSANDTH,
    AccessLevel,
    AttemptStatus,
    integrity_status,
    mean,
)
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.services.auditing import audited_read
from veritas_grpc.services.exams import require_exam
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWorkFactory
from veritas_grpc.services.views.attempts import (
    AttemptRecord,
    AttemptView,
    StudentAttemptsView,
    attempt_record,
    listed_view,
)
from veritas_grpc.services.views.exams import (
    ExamAnalyticsView,
    ExamView,
    analytics_view,
    exam_view,
)
from veritas_grpc.services.views.students import (
    PerformanceView,
    StudentProfileView,
    performance_view,
    profile_view,
)

HISTORY_LIMIT = 50
DASHBOARD_EXAMS = 50
RECENT_ALERTS = 20
DETAIL_ATTEMPTS = 200


@dataclass(frozen=True)
class StudentDashboard:
    profile: StudentProfileView
    performance: PerformanceView
    history: list[AttemptView]


@dataclass(frozen=True)
class ExamOverview:
    exam: ExamView
    analytics: ExamAnalyticsView


@dataclass(frozen=True)
class TeacherDashboard:
    exams: list[ExamOverview]
    alerts: list[AttemptView]


@dataclass(frozen=True)
class ExamAnalytics:
    overview: ExamOverview
    students: Page[StudentAttemptsView]


@dataclass(frozen=True)
class StudentDetail:
    profile: StudentProfileView
    performance: PerformanceView
    attempts: list[AttemptView]


def _overview(visible: VisibleExam, stats: ExamStats | ListedExam) -> ExamOverview:
    return ExamOverview(exam_view(visible, stats.attempt_count), analytics_view(stats))


def _performance_over(attempts: list[ListedAttempt]) -> PerformanceView:
    """A student's figures over some of their attempts (never stored)."""
    graded = [a.percentage for a in attempts if a.percentage is not None]
    assessed = [a.integrity_score for a in attempts if a.integrity_score is not None]
    mean_integrity = mean(sum(assessed, Decimal(0)), len(assessed), TEN_THOUSANDTH)
    return PerformanceView(
        finished_attempt_count=sum(AttemptStatus(a.status).gradable for a in attempts),
        passed_attempt_count=sum(bool(a.passed) for a in attempts),
        mean_score_percent=mean(sum(graded, Decimal(0)), len(graded), CENT),
        mean_integrity_score=mean_integrity,
        integrity_status=integrity_status(mean_integrity),
        flagged=any(a.flagged for a in attempts),
    )


class DashboardService:
    """`reads`: where the staff views read (the replica for the RPCs whose contract says
    READ_SOURCE_REPLICA); their audit rows go to the primary. The student's own
    dashboard reads the primary: it must show what they just did."""

    def __init__(
        self, uow_factory: UnitOfWorkFactory, reads: UnitOfWorkFactory | None = None
    ) -> None:
        self._uow_factory = uow_factory
        self._reads = reads or uow_factory

    def student_dashboard(self, student: Principal) -> StudentDashboard:
        with self._uow_factory() as uow:
            found = uow.student_stats.dashboard(student.user_id)
            if found is None:
                raise NotFound("student profile not found")
            user, profile, metrics = found
            history = uow.attempts.history(student.user_id, HISTORY_LIMIT)
        return StudentDashboard(
            profile_view(user, profile),
            performance_view(metrics),
            [listed_view(entry) for entry in history],
        )

    def teacher_dashboard(self, actor: Principal) -> TeacherDashboard:
        with audited_read(self._reads, self._uow_factory, actor) as read:
            exams = read.uow.exams.list_visible(actor, None, DASHBOARD_EXAMS)
            alerts = read.uow.attempts.recent_flags(actor, RECENT_ALERTS)
            if alerts:
                read.audit("teacher.read_alerts", "teacher", actor.user_id)
        return TeacherDashboard(
            [_overview(visible, stats) for visible, stats in exams],
            [listed_view(found) for found in alerts],
        )

    def exam_analytics(
        self, actor: Principal, exam_id: str, page_size: int, page_token: str
    ) -> ExamAnalytics:
        exam_uuid = parse_id(exam_id, "exam_id")
        request = page_request(page_size, page_token, f"analytics:{exam_uuid}")
        after = position(request, str, uuid.UUID)
        with audited_read(self._reads, self._uow_factory, actor) as read:
            uow = read.uow
            visible = require_exam(uow, actor, exam_uuid, AccessLevel.VIEW)
            stats = uow.exams.stats([exam_uuid])[exam_uuid]
            students = uow.attempts.students_page(exam_uuid, after, request.size + 1)
            page = paginate(students, request, lambda student: (student[1], student[0]))
            attempts = uow.attempts.of_students(exam_uuid, [sid for sid, _ in page.items])
            by_student: dict[uuid.UUID, list[AttemptRecord]] = {}
            for attempt in attempts:
                by_student.setdefault(attempt.student_id, []).append(attempt_record(attempt))
            rows = [
                StudentAttemptsView(sid, name, tuple(by_student.get(sid, [])))
                for sid, name in page.items
            ]
            read.audit("exam.read_analytics", "exam", exam_uuid)
        return ExamAnalytics(_overview(visible, stats), Page(rows, page.next_token))

    def student_detail(self, actor: Principal, student_id: str) -> StudentDetail:
        student_uuid = parse_id(student_id, "student_id")
        with audited_read(self._uow_factory, self._uow_factory, actor) as read:
            found = read.uow.student_stats.dashboard(student_uuid)
            attempts = read.uow.attempts.on_visible_exams(actor, student_uuid, DETAIL_ATTEMPTS)
            # Without an attempt on an exam the teacher may see, the student is none of
            # their business: as absent as a student who does not exist.
            if found is None or (not attempts and actor.role is not Role.ADMIN):
                raise NotFound("student not found")
            read.audit("student.read_detail", "user", student_uuid)
            user, profile, metrics = found
            if actor.role is Role.ADMIN:
                performance = performance_view(metrics)
            else:
                # A teacher sees figures over the exams they may see, not the student's
                # results (labels, LMI) on other teachers' exams.
                performance = _performance_over(attempts)
        return StudentDetail(
            profile_view(user, profile), performance, [listed_view(a) for a in attempts]
        )

    def flagged(
        self, actor: Principal, exam_id: str, page_size: int, page_token: str
    ) -> Page[AttemptView]:
        exam_uuid = parse_id(exam_id, "exam_id")
        request = page_request(page_size, page_token, f"flagged:{exam_uuid}")
        after = position(request, datetime.fromisoformat, uuid.UUID)
        with audited_read(self._reads, self._uow_factory, actor) as read:
            require_exam(read.uow, actor, exam_uuid, AccessLevel.VIEW)
            rows = read.uow.attempts.flagged_page(exam_uuid, after, request.size + 1)
            read.audit("exam.read_flagged", "exam", exam_uuid)
        page = paginate(rows, request, lambda r: (r.flagged_at.isoformat(), r.id))
        return Page([listed_view(found) for found in page.items], page.next_token)
