"""Practice exams through the real API: the readiness check, never flagged or graded, a
required practice, bad inputs, and a practice attempt that changes no figure anywhere."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from veritas.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    analysis_pb2,
    analysis_pb2_grpc,
    common_pb2,
    resources_pb2,
    student_pb2,
    teacher_pb2,
)

from tests.e2e.conftest import SignedIn, register_and_login
from tests.e2e.exam_helpers import (
    available,
    exam_message,
    open_window,
    published_exam,
    rpc_error,
    start,
    stubs,
    submit,
    timestamp,
)
from tests.e2e.monitoring_helpers import critical, event, stream
from tests.support import ServerThread, bad_request_fields, make_settings
from veritas_grpc.domain.identity import Role

RULES = [
    resources_pb2.BehaviorRule(event_type="tab_switch", weight=3, flagged=True),
    resources_pb2.BehaviorRule(event_type="multiple_faces", weight=5, flagged=True),
]
CAMERA = resources_pb2.Detector(name="webcam-gaze", version="2.0.1", confidence_score=0.9)
BROWSER = resources_pb2.Detector(name="lockdown-browser", version="7.3")


@pytest.fixture(scope="module")
def live_server(database_url):
    """A second server on the same database computing the system figures on each call."""
    running = ServerThread(make_settings(system_stats_refresh_seconds=0), database_url)
    yield running
    running.stop()


@pytest.fixture
def teacher(make_account) -> SignedIn:
    return make_account(Role.TEACHER)


@pytest.fixture
def analysis_stub(channel):
    return analysis_pb2_grpc.AnalysisServiceStub(channel)


def _practice(teacher_stub, teacher, **fields) -> resources_pb2.Exam:
    values = {"title": "Set-up check", "behavior_rules": RULES, **open_window(), **fields}
    return published_exam(teacher_stub, teacher.metadata, practice=True, **values)


def _anomalous_events(attempt_id: str) -> list[resources_pb2.MonitoringEvent]:
    first = datetime.now(UTC) - timedelta(seconds=30)

    def at(seconds: int):
        return timestamp(first + timedelta(seconds=seconds))

    return [
        event(attempt_id, event_type="gaze_away", detector=CAMERA, occur_time=at(0)),
        critical(attempt_id, detector=CAMERA, occur_time=at(5)),
        event(
            attempt_id,
            event_type="tab_switch",
            is_anomaly=True,
            severity=common_pb2.SEVERITY_CRITICAL,
            detector=BROWSER,
            occur_time=at(10),
        ),
        event(attempt_id, event_type="tab_switch", detector=BROWSER, occur_time=at(12)),
        event(attempt_id, event_type="tab_switch", detector=BROWSER, occur_time=at(14)),
        event(attempt_id, event_type="heartbeat", occur_time=at(20)),
    ]


def test_a_practice_attempt_is_checked_scored_but_never_flagged_or_graded(
    channel, teacher, auth_stub, analysis_stub, make_account
):
    student_stub, teacher_stub = stubs(channel)
    exam = _practice(teacher_stub, teacher)
    assert exam.practice and not exam.required_practice_exam_id
    student = register_and_login(auth_stub)
    attempt = start(student_stub, student, exam.id)
    assert attempt.practice
    events = _anomalous_events(attempt.id)
    assert stream(channel, student.metadata, [events]).accepted_count == 6
    submit(student_stub, student, attempt.id)

    got = student_stub.GetAttempt(
        student_pb2.GetAttemptRequest(attempt_id=attempt.id), metadata=student.metadata
    )
    check = got.readiness
    assert got.attempt.practice and check.event_count == 6
    assert check.first_event_time == events[0].occur_time
    assert check.last_event_time == events[-1].occur_time
    reports = [
        (d.detector_name, d.detector_version, d.event_count, list(d.event_types))
        for d in check.detectors
    ]
    assert reports == [
        ("lockdown-browser", "7.3", 3, ["tab_switch"]),
        ("webcam-gaze", "2.0.1", 2, ["gaze_away", "multiple_faces"]),
        ("", "", 1, ["heartbeat"]),
    ]
    assert check.detectors[0].last_event_time == events[4].occur_time

    # Scored like any attempt, far under the flag threshold, and still not flagged.
    result = analysis_stub.AnalyzeAttempt(
        analysis_pb2.AnalyzeAttemptRequest(attempt_id=attempt.id), metadata=teacher.metadata
    )
    assert result.saved and result.integrity_score < 0.5
    scorer = make_account(Role.SERVICE)
    analysis_stub.CreateBehaviorAnalysis(
        analysis_pb2.CreateBehaviorAnalysisRequest(
            attempt_id=attempt.id,
            integrity_score=0.05,
            dropout_label=common_pb2.DROPOUT_LABEL_COPY,
        ),
        metadata=scorer.metadata,
    )
    view = teacher_stub.GetAttemptMonitoring(
        teacher_pb2.GetAttemptMonitoringRequest(attempt_id=attempt.id), metadata=teacher.metadata
    )
    assert view.attempt.practice and not view.attempt.flagged
    assert view.attempt.integrity_score == pytest.approx(0.05)
    graded = rpc_error(
        teacher_stub.GradeAttempt,
        teacher_pb2.GradeAttemptRequest(attempt_id=attempt.id, points=80),
        metadata=teacher.metadata,
    )
    assert graded.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "practice" in graded.details()

    # A real attempt has no readiness check.
    real = published_exam(teacher_stub, teacher.metadata, **open_window())
    real_attempt = start(student_stub, student, real.id)
    answer = student_stub.GetAttempt(
        student_pb2.GetAttemptRequest(attempt_id=real_attempt.id), metadata=student.metadata
    )
    assert not answer.HasField("readiness") and not answer.attempt.practice


def test_readiness_of_a_practice_attempt_without_events(channel, teacher, auth_stub):
    student_stub, teacher_stub = stubs(channel)
    exam = _practice(teacher_stub, teacher)
    student = register_and_login(auth_stub)
    attempt = start(student_stub, student, exam.id)
    check = student_stub.GetAttempt(
        student_pb2.GetAttemptRequest(attempt_id=attempt.id), metadata=student.metadata
    ).readiness
    assert check.event_count == 0 and not check.detectors
    assert not check.HasField("first_event_time")


def _figures(channel, live_channel, who, exams) -> dict[str, object]:
    """Every figure a client can read that a practice attempt might move."""
    student_stub, teacher_stub = stubs(channel)
    analysis_stub = analysis_pb2_grpc.AnalysisServiceStub(channel)
    admin_stub = admin_pb2_grpc.AdminServiceStub(live_channel)
    student, teacher, admin = who
    figures: dict[str, object] = {
        "student dashboard": student_stub.GetStudentDashboard(
            student_pb2.GetStudentDashboardRequest(), metadata=student.metadata
        ),
        "teacher dashboard": teacher_stub.GetTeacherDashboard(
            teacher_pb2.GetTeacherDashboardRequest(), metadata=teacher.metadata
        ),
        "student detail": teacher_stub.GetStudentDetail(
            teacher_pb2.GetStudentDetailRequest(student_id=student.user_id),
            metadata=teacher.metadata,
        ),
        "admin's student detail": teacher_stub.GetStudentDetail(
            teacher_pb2.GetStudentDetailRequest(student_id=student.user_id),
            metadata=admin.metadata,
        ),
        "risk summary": analysis_stub.GetHighRiskSummary(
            analysis_pb2.GetHighRiskSummaryRequest(), metadata=admin.metadata
        ),
        "recomputed": analysis_stub.RecomputeStudentPerformance(
            analysis_pb2.RecomputeStudentPerformanceRequest(student_id=student.user_id),
            metadata=admin.metadata,
        ),
    }
    for name, exam_id in exams.items():
        figures[f"{name} analytics"] = teacher_stub.GetExamAnalytics(
            teacher_pb2.GetExamAnalyticsRequest(exam_id=exam_id), metadata=teacher.metadata
        )
        figures[f"{name} flagged"] = teacher_stub.ListFlaggedAttempts(
            teacher_pb2.ListFlaggedAttemptsRequest(exam_id=exam_id), metadata=teacher.metadata
        )
    stats = admin_stub.GetSystemStats(admin_pb2.GetSystemStatsRequest(), metadata=admin.metadata)
    # When it was computed, and the analysis queue (work, not a figure of anyone's).
    stats.ClearField("compute_time")
    stats.ClearField("analysis_queue")
    figures["system stats"] = stats
    return figures


def test_a_practice_attempt_changes_no_figure_anywhere(
    channel, live_server, teacher, auth_stub, analysis_stub, make_account
):
    student_stub, teacher_stub = stubs(channel)
    admin, scorer = make_account(Role.ADMIN), make_account(Role.SERVICE)
    student = register_and_login(auth_stub)
    # A real attempt first, graded, assessed and flagged, so the figures are not empty.
    real = published_exam(teacher_stub, teacher.metadata, behavior_rules=RULES, **open_window())
    counted = start(student_stub, student, real.id)
    stream(channel, student.metadata, [[critical(counted.id)]])
    submit(student_stub, student, counted.id)
    teacher_stub.GradeAttempt(
        teacher_pb2.GradeAttemptRequest(attempt_id=counted.id, points=70),
        metadata=teacher.metadata,
    )
    analysis_stub.CreateBehaviorAnalysis(
        analysis_pb2.CreateBehaviorAnalysisRequest(
            attempt_id=counted.id,
            integrity_score=0.6,
            learning_momentum_index=0.7,
            dropout_label=common_pb2.DROPOUT_LABEL_INCAPABLE,
        ),
        metadata=scorer.metadata,
    )
    practice = _practice(teacher_stub, teacher)
    exams = {"real": real.id, "practice": practice.id}
    who = (student, teacher, admin)

    with grpc.insecure_channel(live_server.address) as live_channel:
        before = _figures(channel, live_channel, who, exams)
        attempt = start(student_stub, student, practice.id)
        events = _anomalous_events(attempt.id)
        assert stream(channel, student.metadata, [events]).accepted_count == len(events)
        submit(student_stub, student, attempt.id)
        analysis_stub.AnalyzeAttempt(
            analysis_pb2.AnalyzeAttemptRequest(attempt_id=attempt.id), metadata=teacher.metadata
        )
        analysis_stub.CreateBehaviorAnalysis(
            analysis_pb2.CreateBehaviorAnalysisRequest(
                attempt_id=attempt.id,
                integrity_score=0.02,
                learning_momentum_index=0.1,
                dropout_label=common_pb2.DROPOUT_LABEL_COPY,
            ),
            metadata=scorer.metadata,
        )
        after = _figures(channel, live_channel, who, exams)

    for name, figure in before.items():
        assert after[name] == figure, f"{name} changed"
    history = before["student dashboard"].exam_history
    assert [entry.attempt_id for entry in history] == [counted.id]
    assert before["student dashboard"].performance.dropout_label == (
        common_pb2.DROPOUT_LABEL_INCAPABLE
    )
    # The admin still finds the practice attempt, marked.
    search = admin_pb2_grpc.AdminServiceStub(channel).SearchAttempts(
        admin_pb2.SearchAttemptsRequest(student_id=student.user_id), metadata=admin.metadata
    )
    assert {(a.id, a.practice) for a in search.attempts} == {
        (counted.id, False),
        (attempt.id, True),
    }


def test_a_required_practice_blocks_the_start_until_submitted(channel, teacher, auth_stub):
    student_stub, teacher_stub = stubs(channel)
    practice = _practice(teacher_stub, teacher, title="Camera check")
    real = published_exam(
        teacher_stub,
        teacher.metadata,
        required_practice_exam_id=practice.id,
        **open_window(),
    )
    assert real.required_practice_exam_id == practice.id and not real.practice
    student = register_and_login(auth_stub)

    def refused():
        error = rpc_error(
            student_stub.StartAttempt,
            student_pb2.StartAttemptRequest(exam_id=real.id),
            metadata=student.metadata,
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Camera check" in error.details() and practice.id in error.details()

    refused()
    trial = start(student_stub, student, practice.id)
    refused()  # started is not completed
    submit(student_stub, student, trial.id)
    assert start(student_stub, student, real.id).exam_id == real.id


def test_a_required_practice_archived_since_requires_nothing(channel, teacher, auth_stub):
    """No student could take it any more: the requirement lapses, and the refusal (there
    is none) names no exam the student cannot see."""
    student_stub, teacher_stub = stubs(channel)
    practice = _practice(teacher_stub, teacher, title="Camera check")
    real = published_exam(
        teacher_stub, teacher.metadata, required_practice_exam_id=practice.id, **open_window()
    )
    student = register_and_login(auth_stub)
    request = student_pb2.StartAttemptRequest(exam_id=real.id)
    refused = rpc_error(student_stub.StartAttempt, request, metadata=student.metadata)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert available(student_stub, student)[real.id].required_practice_exam_id == practice.id
    teacher_stub.ArchiveExam(
        teacher_pb2.ArchiveExamRequest(exam_id=practice.id), metadata=teacher.metadata
    )
    listed = available(student_stub, student)[real.id]
    assert listed.required_practice_exam_id == "" and not listed.required_practice_completed
    assert start(student_stub, student, real.id).exam_id == real.id


def _update(teacher_stub, teacher, exam_id, paths, **fields):
    return teacher_stub.UpdateExam(
        teacher_pb2.UpdateExamRequest(
            exam=resources_pb2.Exam(id=exam_id, **fields), update_mask=FieldMask(paths=paths)
        ),
        metadata=teacher.metadata,
    ).exam


def test_practice_is_immutable(channel, teacher):
    _, teacher_stub = stubs(channel)
    practice = _practice(teacher_stub, teacher)
    real = published_exam(teacher_stub, teacher.metadata, **open_window())
    for exam, value in ((practice, False), (real, True)):
        error = rpc_error(_update, teacher_stub, teacher, exam.id, ["practice"], practice=value)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "immutable" in bad_request_fields(error)["exam.practice"]
    # Its own value again is no change (AIP-203), beside a real change.
    same = _update(
        teacher_stub, teacher, practice.id, ["practice", "title"], practice=True, title="Again"
    )
    assert same.practice and same.title == "Again"


def test_required_practice_bad_inputs(channel, teacher, make_account):
    _, teacher_stub = stubs(channel)
    practice = _practice(teacher_stub, teacher)
    real = published_exam(teacher_stub, teacher.metadata, **open_window())
    strangers = _practice(teacher_stub, make_account(Role.TEACHER))
    field = "exam.required_practice_exam_id"
    path = ["required_practice_exam_id"]

    def create(**fields):
        return teacher_stub.CreateExam(
            teacher_pb2.CreateExamRequest(exam=exam_message(**fields)), metadata=teacher.metadata
        ).exam

    for value, code in (
        ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT),
        (real.id, grpc.StatusCode.INVALID_ARGUMENT),  # not a practice exam
        (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND),
        (strangers.id, grpc.StatusCode.NOT_FOUND),  # one the caller cannot see
    ):
        created = rpc_error(create, required_practice_exam_id=value)
        updated = rpc_error(
            _update,
            teacher_stub,
            teacher,
            real.id,
            ["required_practice_exam_id"],
            required_practice_exam_id=value,
        )
        for error in (created, updated):
            assert error.code() == code, value
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert field in bad_request_fields(error)
    # A draft practice exam, or an archived one, would block the students for ever.
    draft = teacher_stub.CreateExam(
        teacher_pb2.CreateExamRequest(exam=exam_message(practice=True, title="Secret draft")),
        metadata=teacher.metadata,
    ).exam
    archived = _practice(teacher_stub, teacher)
    teacher_stub.ArchiveExam(
        teacher_pb2.ArchiveExamRequest(exam_id=archived.id), metadata=teacher.metadata
    )
    for unpublished in (draft.id, archived.id):
        created = rpc_error(create, required_practice_exam_id=unpublished)
        updated = rpc_error(
            _update, teacher_stub, teacher, real.id, path, required_practice_exam_id=unpublished
        )
        for error in (created, updated):
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "must be a published practice exam" in bad_request_fields(error)[field]
    # A practice exam requires none.
    for error in (
        rpc_error(create, practice=True, required_practice_exam_id=practice.id),
        rpc_error(
            _update,
            teacher_stub,
            teacher,
            practice.id,
            ["required_practice_exam_id"],
            required_practice_exam_id=practice.id,
        ),
    ):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad_request_fields(error)
    # Set by an update, then cleared by an empty value.
    required = _update(teacher_stub, teacher, real.id, path, required_practice_exam_id=practice.id)
    assert required.required_practice_exam_id == practice.id
    assert not _update(teacher_stub, teacher, real.id, path).required_practice_exam_id
