"""Attempts on a real database: time-outs, concurrent sweeps, and the running figures
equal to a recomputation from the attempts after any sequence of changes."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.integration.test_auth_service import Clock
from tests.support import PASSWORD, unique_email, unique_enrollment
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.domain.errors import FailedPrecondition
from veritas_grpc.domain.exams import AttemptStatus, DropoutLabel
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services.analysis import AnalysisService, ExternalAnalysis
from veritas_grpc.services.attempts import AttemptService
from veritas_grpc.services.exams import ExamDraft, ExamService


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def world(services, clock):
    session_factory = make_session_factory(services.engine)

    def uow():
        return SqlAlchemyUnitOfWork(session_factory)

    attempts = AttemptService(uow, clock, Decimal("0.5"), timedelta(minutes=2))
    exams = ExamService(uow, clock)
    analysis = AnalysisService(uow, clock, Decimal("0.5"))
    return attempts, exams, session_factory, analysis


def _principal(services, role):
    enrollment = unique_enrollment() if role is Role.STUDENT else None
    view = services.accounts.create_account(role, unique_email(), PASSWORD, "Name", enrollment)
    now = datetime.now(UTC)
    return Principal(view.id, role, "jti", uuid.uuid4(), now + timedelta(hours=1))


def _exam(exams, teacher, **fields):
    values = {
        "title": "Exam",
        "max_points": 50,
        "pass_points": 25,
        "duration_minutes": 30,
        "max_attempts": 3,
        **fields,
    }
    created = exams.create(teacher, ExamDraft(**values))
    exams.publish(teacher, str(created.id))
    return created.id


def test_overdue_attempts_time_out_after_the_grace(world, services, clock):
    attempts, exams, _, _ = world
    teacher = _principal(services, Role.TEACHER)
    student = _principal(services, Role.STUDENT)
    exam_id = _exam(exams, teacher)
    attempt = attempts.start(student, str(exam_id)).attempt
    clock.advance(minutes=31)
    attempts.sweep_overdue()  # other tests' attempts may be due; this one is within the grace
    own = attempts.get_own(student, str(attempt.id))
    assert own.found.attempt.status == AttemptStatus.IN_PROGRESS
    clock.advance(minutes=2)
    assert attempts.sweep_overdue() >= 1
    own = attempts.get_own(student, str(attempt.id))
    assert own.found.attempt.status == AttemptStatus.TIMED_OUT
    with pytest.raises(FailedPrecondition):
        attempts.submit(student, str(attempt.id))


def test_a_submission_after_the_deadline_and_grace_times_the_attempt_out(world, services, clock):
    attempts, exams, _, _ = world
    teacher = _principal(services, Role.TEACHER)
    student = _principal(services, Role.STUDENT)
    exam_id = _exam(exams, teacher)
    on_time = attempts.start(student, str(exam_id)).attempt
    clock.advance(minutes=31)  # past the 30-minute deadline, within the 2-minute grace
    assert attempts.submit(student, str(on_time.id)).attempt.status == AttemptStatus.SUBMITTED
    late = attempts.start(student, str(exam_id)).attempt
    clock.advance(minutes=33)
    assert attempts.submit(student, str(late.id)).attempt.status == AttemptStatus.TIMED_OUT


def test_concurrent_sweeps_time_each_attempt_out_once(world, services, clock):
    attempts, exams, session_factory, _ = world
    teacher = _principal(services, Role.TEACHER)
    exam_id = _exam(exams, teacher)
    students = [_principal(services, Role.STUDENT) for _ in range(6)]
    for student in students:
        attempts.start(student, str(exam_id))
    clock.advance(hours=1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: attempts.sweep_overdue(), range(8)))
    with session_factory() as session:
        finished = session.execute(
            text("SELECT finished_count FROM exam_stats WHERE exam_id = :e"), {"e": exam_id}
        ).scalar_one()
    assert finished == 6  # each timed out once, counted once


RECOMPUTED_EXAM = """
SELECT count(*) AS attempt_count,
       count(DISTINCT student_id) AS student_count,
       count(*) FILTER (WHERE status IN ('SUBMITTED', 'TIMED_OUT')) AS finished_count,
       count(score) AS graded_count,
       coalesce(sum(score), 0) AS score_sum,
       count(*) FILTER (WHERE passed) AS passed_count,
       count(integrity_score) AS integrity_count,
       coalesce(sum(integrity_score), 0) AS integrity_sum,
       count(*) FILTER (WHERE flagged) AS flagged_count,
       count(*) FILTER (WHERE dropout_label IN ('COPY', 'NO_INTEREST')
                        OR integrity_score < 0.5) AS high_risk_count,
       count(*) FILTER (WHERE integrity_score >= 0.8) AS integrity_good_count,
       count(*) FILTER (WHERE integrity_score >= 0.5 AND integrity_score < 0.8)
           AS integrity_watch_count,
       count(*) FILTER (WHERE integrity_score < 0.5) AS integrity_at_risk_count,
       count(*) FILTER (WHERE dropout_label = 'SAFE') AS safe_count,
       count(*) FILTER (WHERE dropout_label = 'INCAPABLE') AS incapable_count,
       count(*) FILTER (WHERE dropout_label = 'COPY') AS copy_count,
       count(*) FILTER (WHERE dropout_label = 'NO_INTEREST') AS no_interest_count
FROM exam_attempts WHERE exam_id = :exam AND NOT is_practice
"""
STORED_EXAM = """
SELECT attempt_count, student_count, finished_count, graded_count, score_sum, passed_count,
       integrity_count, integrity_sum, flagged_count, high_risk_count, integrity_good_count,
       integrity_watch_count, integrity_at_risk_count, safe_count,
       incapable_count, copy_count, no_interest_count
FROM exam_stats WHERE exam_id = :exam
"""
RECOMPUTED_STUDENT = """
SELECT count(*) FILTER (WHERE status IN ('SUBMITTED', 'TIMED_OUT')),
       count(score), count(*) FILTER (WHERE passed), coalesce(sum(percentage), 0),
       count(integrity_score), coalesce(sum(integrity_score), 0), count(*) FILTER (WHERE flagged)
FROM exam_attempts WHERE student_id = :student AND NOT is_practice
"""
STORED_STUDENT = """
SELECT finished_count, graded_count, passed_count, percentage_sum, integrity_count,
       integrity_sum, flagged_count
FROM student_profiles WHERE user_id = :student
"""

# Students 0 and 1 may start attempts beyond max_attempts (an allowance); attempts at the
# practice exam count in no figure.
EXTRA_ATTEMPTS = """
INSERT INTO exam_allowances (exam_id, student_id, kind, extra_attempts)
VALUES (:exam, :student, 'EXTRA_ATTEMPTS', 3)
"""
operation = st.one_of(
    st.tuples(st.just("start"), st.integers(0, 2), st.sampled_from(["real", "practice"])),
    # A whole attempt at once: later attempts (numbers past max_attempts) come sooner.
    st.tuples(st.just("take"), st.integers(0, 2), st.sampled_from(["real", "practice"])),
    st.tuples(st.just("finish"), st.integers(0, 2), st.sampled_from(["submit", "abandon"])),
    st.tuples(st.just("grade"), st.integers(0, 2), st.decimals(0, 50, places=2)),
    st.tuples(
        st.just("assess"),
        st.integers(0, 2),
        st.decimals(0, 1, places=4),
        st.sampled_from(list(DropoutLabel)),
        st.floats(0, 1),
    ),
    st.tuples(st.just("analyze"), st.integers(0, 2)),
    st.tuples(st.just("review"), st.integers(0, 2), st.sampled_from(["CLEARED", "VIOLATION"])),
    st.tuples(st.just("sweep"), st.integers(0, 40)),
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(operation, min_size=4, max_size=16))
def test_running_figures_equal_a_recomputation(world, services, clock, operations):
    attempts, exams, session_factory, analysis = world
    teacher = _principal(services, Role.TEACHER)
    scorer = _principal(services, Role.SERVICE)
    students = [_principal(services, Role.STUDENT) for _ in range(3)]
    exam_id = _exam(exams, teacher, max_attempts=1)
    practice_id = _exam(exams, teacher, practice=True)
    with session_factory() as session:
        for student in students[:2]:
            session.execute(text(EXTRA_ATTEMPTS), {"exam": exam_id, "student": student.user_id})
        session.commit()
    exam_ids = {"real": exam_id, "practice": practice_id}
    latest: dict[int, uuid.UUID] = {}
    for op in operations:
        who = op[1] if op[0] != "sweep" else 0
        student = students[who]
        try:
            if op[0] in ("start", "take"):
                latest[who] = attempts.start(student, str(exam_ids[op[2]])).attempt.id
                if op[0] == "take":
                    attempts.submit(student, str(latest[who]))
            elif op[0] == "finish" and who in latest:
                finish = attempts.submit if op[2] == "submit" else attempts.abandon
                finish(student, str(latest[who]))
            elif op[0] == "grade" and who in latest:
                attempts.grade(teacher, str(latest[who]), float(op[2]))
            elif op[0] == "assess" and who in latest:
                analysis.save(
                    scorer,
                    str(latest[who]),
                    ExternalAnalysis(float(op[2]), op[4], op[3], "", "", [], "m", "1", ""),
                )
            elif op[0] == "analyze" and who in latest:
                analysis.analyze(scorer, str(latest[who]))
            elif op[0] == "review" and who in latest:
                analysis.review_attempt(teacher, str(latest[who]), op[2], "")
            elif op[0] == "sweep":
                clock.advance(minutes=op[1])
                attempts.sweep_overdue()
        except FailedPrecondition:
            pass  # refused transitions change nothing, which the comparison checks too
    with session_factory() as session:
        for exam in ({"exam": exam_id}, {"exam": practice_id}):
            assert (
                session.execute(text(STORED_EXAM), exam).one()
                == session.execute(text(RECOMPUTED_EXAM), exam).one()
            )
        for student in students:
            ids = {"student": student.user_id}
            assert (
                session.execute(text(STORED_STUDENT), ids).one()
                == session.execute(text(RECOMPUTED_STUDENT), ids).one()
            )
    # The repair tool (RecomputeStudentPerformance) finds nothing to repair.
    metrics = (
        "SELECT exams_taken, exams_passed, average_score, average_integrity, latest_lmi, "
        "lmi_trend, risk_label, flagged FROM performance_metrics WHERE student_id = :student"
    )
    for student in students:
        ids = {"student": student.user_id}
        with session_factory() as session:
            before = session.execute(text(metrics), ids).one_or_none()
        analysis.recompute_student(scorer, str(student.user_id))
        with session_factory() as session:
            after = session.execute(text(metrics), ids).one()
        if before is None:  # never touched: the recompute creates the empty row
            assert after[:2] == (0, 0) and after[4] is None
        else:
            assert before == after
