"""The exams-and-attempts story: two teachers, three students, sharing, grading and the
dashboards moving to exact numbers."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from sqlalchemy import func, select
from veritas.v1 import analysis_pb2, analysis_pb2_grpc, common_pb2, student_pb2, teacher_pb2

from tests.e2e.conftest import register_and_login
from tests.e2e.exam_helpers import open_window, published_exam, rpc_error, start, stubs, submit
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import AuditLog, ExamAttempt
from veritas_grpc.domain.identity import Role

NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture
def apis(channel):
    return stubs(channel)


def _analytics(teacher_stub, teacher, exam_id, **kwargs):
    return teacher_stub.GetExamAnalytics(
        teacher_pb2.GetExamAnalyticsRequest(exam_id=exam_id, **kwargs), metadata=teacher.metadata
    )


def test_two_teachers_three_students(apis, auth_stub, make_account, channel, services):
    student_stub, teacher_stub = apis
    teacher_a, teacher_b = make_account(Role.TEACHER), make_account(Role.TEACHER)
    students = [register_and_login(auth_stub) for _ in range(3)]
    exam = published_exam(teacher_stub, teacher_a.metadata, **open_window())
    assert exam.status == common_pb2.EXAM_STATUS_PUBLISHED
    assert exam.access_level == common_pb2.ACCESS_LEVEL_MANAGE

    # Teacher B cannot see the exam at all until it is shared.
    assert rpc_error(_analytics, teacher_stub, teacher_b, exam.id).code() == NOT_FOUND
    listed = teacher_stub.ListExams(teacher_pb2.ListExamsRequest(), metadata=teacher_b.metadata)
    assert exam.id not in [e.id for e in listed.exams]
    teacher_stub.GrantExamAccess(
        teacher_pb2.GrantExamAccessRequest(
            exam_id=exam.id, teacher_id=teacher_b.user_id, access_level=common_pb2.ACCESS_LEVEL_VIEW
        ),
        metadata=teacher_a.metadata,
    )
    listed = teacher_stub.ListExams(teacher_pb2.ListExamsRequest(), metadata=teacher_b.metadata)
    [shared] = [e for e in listed.exams if e.id == exam.id]
    assert shared.access_level == common_pb2.ACCESS_LEVEL_VIEW

    # Students find the exam, start (once at a time) and submit.
    attempts = []
    for student in students:
        available = student_stub.ListAvailableExams(
            student_pb2.ListAvailableExamsRequest(page_size=100), metadata=student.metadata
        )
        [offered] = [e for e in available.exams if e.exam_id == exam.id]
        assert (offered.used_attempt_count, offered.remaining_attempt_count) == (0, 2)
        attempt = start(student_stub, student, exam.id)
        assert attempt.status == common_pb2.ATTEMPT_STATUS_IN_PROGRESS
        again = rpc_error(start, student_stub, student, exam.id)
        assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
        attempts.append(submit(student_stub, student, attempt.id))
    assert all(a.status == common_pb2.ATTEMPT_STATUS_SUBMITTED for a in attempts)
    assert not attempts[0].HasField("points")

    # A student cannot read another student's attempt: it does not exist for them.
    other = rpc_error(
        student_stub.GetAttempt,
        student_pb2.GetAttemptRequest(attempt_id=attempts[1].id),
        metadata=students[0].metadata,
    )
    assert other.code() == NOT_FOUND

    # Teacher B may read but not grade.
    analytics = _analytics(teacher_stub, teacher_b, exam.id)
    assert analytics.analytics.attempt_count == 3
    assert analytics.analytics.student_count == 3
    assert not analytics.analytics.HasField("mean_points")
    denied = rpc_error(
        teacher_stub.GradeAttempt,
        teacher_pb2.GradeAttemptRequest(attempt_id=attempts[0].id, points=90),
        metadata=teacher_b.metadata,
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED

    # Teacher A grades; the scoring service's assessments land on the attempts.
    for attempt, score in zip(attempts, (80, 60, 40), strict=True):
        graded = teacher_stub.GradeAttempt(
            teacher_pb2.GradeAttemptRequest(attempt_id=attempt.id, points=score),
            metadata=teacher_a.metadata,
        ).attempt
        assert graded.points == score and graded.score_percent == score
        assert graded.passed == (score >= 50)
    scorer = make_account(Role.SERVICE)
    analysis_stub = analysis_pb2_grpc.AnalysisServiceStub(channel)
    labels = (
        common_pb2.DROPOUT_LABEL_SAFE,
        common_pb2.DROPOUT_LABEL_INCAPABLE,
        common_pb2.DROPOUT_LABEL_COPY,
    )
    for attempt, integrity, label in zip(attempts, (0.9, 0.7, 0.3), labels, strict=True):
        analysis_stub.CreateBehaviorAnalysis(
            analysis_pb2.CreateBehaviorAnalysisRequest(
                attempt_id=attempt.id, integrity_score=integrity, dropout_label=label
            ),
            metadata=scorer.metadata,
        )

    analytics = _analytics(teacher_stub, teacher_b, exam.id)
    figures = analytics.analytics
    assert figures.attempt_count == 3 and figures.student_count == 3
    assert figures.mean_points == 60.0
    assert figures.pass_rate == pytest.approx(2 / 3)
    assert figures.mean_integrity_score == pytest.approx(0.6333)
    assert figures.high_risk_count == 1 and figures.flagged_count == 1
    risk = analytics.risk_distribution
    assert (risk.safe_count, risk.incapable_count, risk.copy_count, risk.no_interest_count) == (
        1,
        1,
        1,
        0,
    )
    assert [s.student_name for s in analytics.students] == sorted(
        s.student_name for s in analytics.students
    )
    assert sorted(a.points for s in analytics.students for a in s.attempts) == [40, 60, 80]
    assert analytics.exam.max_points == 100

    # Dashboards, both sides, read the same figures.
    board = teacher_stub.GetTeacherDashboard(
        teacher_pb2.GetTeacherDashboardRequest(), metadata=teacher_a.metadata
    )
    [overview] = [o for o in board.exams if o.exam.id == exam.id]
    assert overview.analytics == figures
    assert overview.exam.behavior_rules_locked
    assert [a.attempt_id for a in board.recent_flagged_attempts if a.exam_id == exam.id] == [
        attempts[2].id
    ]

    def dashboard(student):
        return student_stub.GetStudentDashboard(
            student_pb2.GetStudentDashboardRequest(), metadata=student.metadata
        )

    first, third = dashboard(students[0]), dashboard(students[2])
    assert (first.performance.finished_attempt_count, first.performance.passed_attempt_count) == (
        1,
        1,
    )
    assert first.performance.mean_score_percent == 80.0
    assert first.performance.mean_integrity_score == 0.9
    assert first.performance.integrity_status == common_pb2.INTEGRITY_STATUS_GOOD
    assert first.performance.dropout_label == common_pb2.DROPOUT_LABEL_SAFE
    assert not first.performance.flagged
    assert [h.exam_title for h in first.exam_history] == [exam.title]
    assert first.exam_history[0].score_percent == 80.0
    assert (
        third.performance.flagged
        and third.performance.dropout_label == common_pb2.DROPOUT_LABEL_COPY
    )
    assert third.performance.integrity_status == common_pb2.INTEGRITY_STATUS_AT_RISK
    assert (third.performance.passed_attempt_count, third.performance.mean_score_percent) == (
        0,
        40.0,
    )

    flagged = teacher_stub.ListFlaggedAttempts(
        teacher_pb2.ListFlaggedAttemptsRequest(exam_id=exam.id), metadata=teacher_b.metadata
    )
    assert [(a.id, a.student_id) for a in flagged.attempts] == [
        (attempts[2].id, students[2].user_id)
    ]

    detail = teacher_stub.GetStudentDetail(
        teacher_pb2.GetStudentDetailRequest(student_id=students[0].user_id),
        metadata=teacher_b.metadata,
    )
    assert [a.id for a in detail.attempts] == [attempts[0].id]
    assert detail.performance.mean_score_percent == 80.0
    # Figures over the exams the teacher may see; no label or LMI from other exams.
    assert (
        detail.performance.finished_attempt_count,
        detail.performance.passed_attempt_count,
    ) == (1, 1)
    assert detail.performance.dropout_label == common_pb2.DROPOUT_LABEL_UNSPECIFIED

    # A regrade moves every figure by the difference.
    teacher_stub.GradeAttempt(
        teacher_pb2.GradeAttemptRequest(attempt_id=attempts[2].id, points=55),
        metadata=teacher_a.metadata,
    )
    figures = _analytics(teacher_stub, teacher_a, exam.id).analytics
    assert (figures.mean_points, figures.pass_rate) == (65.0, 1.0)
    assert dashboard(students[2]).performance.mean_score_percent == 55.0

    # Revoked: NOT_FOUND again, everywhere.
    teacher_stub.RevokeExamAccess(
        teacher_pb2.RevokeExamAccessRequest(exam_id=exam.id, teacher_id=teacher_b.user_id),
        metadata=teacher_a.metadata,
    )
    assert rpc_error(_analytics, teacher_stub, teacher_b, exam.id).code() == NOT_FOUND
    gone = rpc_error(
        teacher_stub.GetStudentDetail,
        teacher_pb2.GetStudentDetailRequest(student_id=students[0].user_id),
        metadata=teacher_b.metadata,
    )
    assert gone.code() == NOT_FOUND

    with make_session_factory(services.engine)() as session:
        actions = session.scalars(
            select(AuditLog.action).where(
                AuditLog.actor_id.in_([uuid.UUID(teacher_a.user_id), uuid.UUID(teacher_b.user_id)])
            )
        ).all()
    for action in (
        "exam.grant",
        "exam.revoke",
        "attempt.grade",
        "exam.read_analytics",
        "student.read_detail",
        "exam.read_flagged",
    ):
        assert action in actions, action
    assert actions.count("attempt.grade") == 4


def test_concurrent_starts_make_one_attempt(apis, auth_stub, make_account, services):
    student_stub, teacher_stub = apis
    teacher = make_account(Role.TEACHER)
    exam = published_exam(teacher_stub, teacher.metadata, max_attempts=5, **open_window())
    student = register_and_login(auth_stub)

    def try_start(_):
        try:
            start(student_stub, student, exam.id)
            return "started"
        except grpc.RpcError as error:
            return error.code().name

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(try_start, range(8)))
    assert outcomes.count("started") == 1
    assert outcomes.count("FAILED_PRECONDITION") == 7
    with make_session_factory(services.engine)() as session:
        count = session.scalar(
            select(func.count()).where(ExamAttempt.exam_id == uuid.UUID(exam.id))
        )
    assert count == 1
    analytics = teacher_stub.GetExamAnalytics(
        teacher_pb2.GetExamAnalyticsRequest(exam_id=exam.id), metadata=teacher.metadata
    )
    assert analytics.analytics.attempt_count == 1
