"""Bad input on exams and attempts: a clear status, field violations, nothing written."""

import uuid

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import func, select
from veritas.v1 import resources_pb2, student_pb2, teacher_pb2

from tests.e2e.conftest import register_and_login
from tests.e2e.exam_helpers import (
    exam_message,
    open_window,
    published_exam,
    rpc_error,
    start,
    stubs,
    submit,
    timestamp,
)
from tests.support import bad_request_fields
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import Exam, ExamAttempt, ExamStats
from veritas_grpc.domain.identity import Role

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def apis(channel):
    return stubs(channel)


@pytest.fixture
def teacher(make_account):
    return make_account(Role.TEACHER)


@pytest.fixture
def session_factory(services):
    return make_session_factory(services.engine)


def _exam_count(session_factory, teacher):
    with session_factory() as session:
        return session.scalar(
            select(func.count()).where(Exam.created_by == uuid.UUID(teacher.user_id))
        )


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"title": "  "}, {"exam.title"}),
        ({"max_points": -5}, {"exam.max_points", "exam.pass_points"}),
        ({"pass_points": 150}, {"exam.pass_points"}),
        ({"duration_minutes": 0}, {"exam.duration_minutes"}),
        ({"max_attempts": 101}, {"exam.max_attempts"}),
        (
            {"behavior_rules": [resources_pb2.BehaviorRule(event_type="Tab Switch", weight=11)]},
            {"exam.behavior_rules[0].event_type", "exam.behavior_rules[0].weight"},
        ),
    ],
)
def test_invalid_exams_are_refused_and_not_written(
    apis, teacher, session_factory, overrides, fields
):
    _, teacher_stub = apis
    before = _exam_count(session_factory, teacher)
    error = rpc_error(
        teacher_stub.CreateExam,
        teacher_pb2.CreateExamRequest(exam=exam_message(**overrides)),
        metadata=teacher.metadata,
    )
    assert error.code() == INVALID
    assert set(bad_request_fields(error)) == fields
    assert _exam_count(session_factory, teacher) == before


def test_closing_before_opening_is_refused(apis, teacher, session_factory):
    _, teacher_stub = apis
    window = open_window()
    error = rpc_error(
        teacher_stub.CreateExam,
        teacher_pb2.CreateExamRequest(
            exam=exam_message(open_time=window["close_time"], close_time=window["open_time"])
        ),
        metadata=teacher.metadata,
    )
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"exam.close_time"}
    assert _exam_count(session_factory, teacher) == 0


def test_create_is_idempotent_by_request_id(apis, teacher, session_factory):
    _, teacher_stub = apis
    request = teacher_pb2.CreateExamRequest(exam=exam_message(), request_id="create-42")
    first = teacher_stub.CreateExam(request, metadata=teacher.metadata).exam
    second = teacher_stub.CreateExam(request, metadata=teacher.metadata).exam
    assert first.id == second.id
    assert _exam_count(session_factory, teacher) == 1


@pytest.mark.parametrize("value", ["not-a-uuid", ""])
def test_malformed_ids_name_the_field(apis, teacher, value):
    _, teacher_stub = apis
    error = rpc_error(
        teacher_stub.GetExamAnalytics,
        teacher_pb2.GetExamAnalyticsRequest(exam_id=value),
        metadata=teacher.metadata,
    )
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"exam_id"}


def test_unknown_ids_are_not_found(apis, teacher, auth_stub):
    student_stub, teacher_stub = apis
    missing = str(uuid.uuid4())
    for call, request, metadata in (
        (teacher_stub.PublishExam, teacher_pb2.PublishExamRequest(exam_id=missing), teacher),
        (teacher_stub.GradeAttempt, teacher_pb2.GradeAttemptRequest(attempt_id=missing), teacher),
        (
            teacher_stub.GetStudentDetail,
            teacher_pb2.GetStudentDetailRequest(student_id=missing),
            teacher,
        ),
    ):
        assert (
            rpc_error(call, request, metadata=metadata.metadata).code() == grpc.StatusCode.NOT_FOUND
        )
    student = register_and_login(auth_stub)
    for call, request in (
        (student_stub.StartAttempt, student_pb2.StartAttemptRequest(exam_id=missing)),
        (student_stub.GetAttempt, student_pb2.GetAttemptRequest(attempt_id=missing)),
        (student_stub.SubmitAttempt, student_pb2.SubmitAttemptRequest(attempt_id=missing)),
    ):
        assert (
            rpc_error(call, request, metadata=student.metadata).code() == grpc.StatusCode.NOT_FOUND
        )


@pytest.mark.parametrize("page_size", [-1, 101])
def test_page_size_out_of_range(apis, teacher, page_size):
    _, teacher_stub = apis
    error = rpc_error(
        teacher_stub.ListExams,
        teacher_pb2.ListExamsRequest(page_size=page_size),
        metadata=teacher.metadata,
    )
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"page_size"}


def test_page_tokens_only_work_for_their_own_listing(apis, teacher):
    _, teacher_stub = apis
    exams = [published_exam(teacher_stub, teacher.metadata, title=f"Exam {i}") for i in range(3)]
    first = teacher_stub.ListExams(
        teacher_pb2.ListExamsRequest(page_size=2), metadata=teacher.metadata
    )
    assert len(first.exams) == 2 and first.next_page_token
    second = teacher_stub.ListExams(
        teacher_pb2.ListExamsRequest(page_size=2, page_token=first.next_page_token),
        metadata=teacher.metadata,
    )
    assert not second.next_page_token
    assert {e.id for e in [*first.exams, *second.exams]} == {e.id for e in exams}
    for token in ("garbage", first.next_page_token[:-3]):
        error = rpc_error(
            teacher_stub.ListExams,
            teacher_pb2.ListExamsRequest(page_token=token),
            metadata=teacher.metadata,
        )
        assert error.code() == INVALID
    foreign = rpc_error(
        teacher_stub.GetExamAnalytics,
        teacher_pb2.GetExamAnalyticsRequest(exam_id=exams[0].id, page_token=first.next_page_token),
        metadata=teacher.metadata,
    )
    assert set(bad_request_fields(foreign)) == {"page_token"}


def test_scores_outside_the_range_are_refused_and_change_nothing(
    apis, teacher, auth_stub, session_factory
):
    student_stub, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    student = register_and_login(auth_stub)
    attempt = submit(student_stub, student, start(student_stub, student, exam.id).id)
    with session_factory() as session:
        before = session.get(ExamStats, uuid.UUID(exam.id)).graded_count
    for score in (-1, 100.01, float("nan")):
        error = rpc_error(
            teacher_stub.GradeAttempt,
            teacher_pb2.GradeAttemptRequest(attempt_id=attempt.id, points=score),
            metadata=teacher.metadata,
        )
        assert error.code() == INVALID and set(bad_request_fields(error)) == {"points"}
    with session_factory() as session:
        assert session.get(ExamAttempt, uuid.UUID(attempt.id)).score is None
        assert session.get(ExamStats, uuid.UUID(exam.id)).graded_count == before


def test_in_progress_attempts_cannot_be_graded_or_resubmitted(apis, teacher, auth_stub):
    student_stub, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    student = register_and_login(auth_stub)
    attempt = start(student_stub, student, exam.id)
    error = rpc_error(
        teacher_stub.GradeAttempt,
        teacher_pb2.GradeAttemptRequest(attempt_id=attempt.id, points=10),
        metadata=teacher.metadata,
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    submit(student_stub, student, attempt.id)
    again = rpc_error(submit, student_stub, student, attempt.id)
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_rules_lock_once_an_attempt_started_and_archived_exams_are_final(apis, teacher, auth_stub):
    student_stub, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    renamed = teacher_stub.UpdateExam(
        teacher_pb2.UpdateExamRequest(
            exam=resources_pb2.Exam(id=exam.id, title="Renamed"),
            update_mask=FieldMask(paths=["title"]),
        ),
        metadata=teacher.metadata,
    ).exam
    assert (renamed.title, renamed.max_points) == ("Renamed", 100)
    start(student_stub, register_and_login(auth_stub), exam.id)
    locked = rpc_error(
        teacher_stub.UpdateExam,
        teacher_pb2.UpdateExamRequest(
            exam=resources_pb2.Exam(id=exam.id), update_mask=FieldMask(paths=["behavior_rules"])
        ),
        metadata=teacher.metadata,
    )
    assert locked.code() == grpc.StatusCode.FAILED_PRECONDITION
    # A client writing back the exam it read, rules unchanged, is not changing the rules.
    read_back = resources_pb2.Exam()
    read_back.CopyFrom(renamed)
    read_back.title = "Renamed again"
    again = teacher_stub.UpdateExam(
        teacher_pb2.UpdateExamRequest(exam=read_back), metadata=teacher.metadata
    ).exam
    assert again.title == "Renamed again" and again.behavior_rules == renamed.behavior_rules
    bad_mask = rpc_error(
        teacher_stub.UpdateExam,
        teacher_pb2.UpdateExamRequest(
            exam=resources_pb2.Exam(id=exam.id), update_mask=FieldMask(paths=["status"])
        ),
        metadata=teacher.metadata,
    )
    assert set(bad_request_fields(bad_mask)) == {"update_mask"}
    teacher_stub.ArchiveExam(
        teacher_pb2.ArchiveExamRequest(exam_id=exam.id), metadata=teacher.metadata
    )
    archived = rpc_error(
        teacher_stub.UpdateExam,
        teacher_pb2.UpdateExamRequest(
            exam=resources_pb2.Exam(id=exam.id, title="x"), update_mask=FieldMask(paths=["title"])
        ),
        metadata=teacher.metadata,
    )
    assert archived.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_students_cannot_start_drafts_closed_exams_or_beyond_max_attempts(apis, teacher, auth_stub):
    student_stub, teacher_stub = apis
    student = register_and_login(auth_stub)
    draft = teacher_stub.CreateExam(
        teacher_pb2.CreateExamRequest(exam=exam_message()), metadata=teacher.metadata
    ).exam
    assert rpc_error(start, student_stub, student, draft.id).code() == grpc.StatusCode.NOT_FOUND
    window = open_window()
    later = published_exam(
        teacher_stub,
        teacher.metadata,
        open_time=window["close_time"],
        close_time=timestamp(window["close_time"].ToDatetime().replace(year=2100)),
    )
    not_open = rpc_error(start, student_stub, student, later.id)
    assert not_open.code() == grpc.StatusCode.FAILED_PRECONDITION
    once = published_exam(teacher_stub, teacher.metadata, max_attempts=1, **window)
    submit(student_stub, student, start(student_stub, student, once.id).id)
    exhausted = rpc_error(start, student_stub, student, once.id)
    assert exhausted.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no attempts left" in exhausted.details()


def test_students_and_teachers_stay_in_their_lanes(apis, teacher, auth_stub):
    student_stub, teacher_stub = apis
    student = register_and_login(auth_stub)
    denied = rpc_error(
        teacher_stub.ListExams, teacher_pb2.ListExamsRequest(), metadata=student.metadata
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    denied = rpc_error(
        student_stub.GetStudentDashboard,
        student_pb2.GetStudentDashboardRequest(),
        metadata=teacher.metadata,
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_forged_page_token_that_decodes_is_still_invalid(apis, teacher):
    import base64
    import json as json_module

    _, teacher_stub = apis
    forged = (
        base64.urlsafe_b64encode(
            json_module.dumps({"s": "exams", "k": ["not-a-time", "not-a-uuid"]}).encode()
        )
        .decode()
        .rstrip("=")
    )
    error = rpc_error(
        teacher_stub.ListExams,
        teacher_pb2.ListExamsRequest(page_token=forged),
        metadata=teacher.metadata,
    )
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"page_token"}


def test_an_empty_update_mask_changes_only_the_fields_sent(apis, teacher):
    """AIP-134: no mask means the populated fields; a client sending two fields must not
    reset the others. "*" means every settable field, so unset ones are cleared."""
    _, teacher_stub = apis
    draft = teacher_stub.CreateExam(
        teacher_pb2.CreateExamRequest(exam=exam_message(subject="CS201")),
        metadata=teacher.metadata,
    ).exam

    def update(exam, paths=None):
        mask = FieldMask(paths=paths) if paths is not None else None
        return teacher_stub.UpdateExam(
            teacher_pb2.UpdateExamRequest(exam=exam, update_mask=mask),
            metadata=teacher.metadata,
        ).exam

    two = update(resources_pb2.Exam(id=draft.id, title="Renamed", max_attempts=3))
    assert (two.title, two.max_attempts) == ("Renamed", 3)
    assert (two.subject, two.max_points, two.duration_minutes) == ("CS201", 100, 60)
    assert [r.event_type for r in two.behavior_rules] == ["tab_switch"]

    nothing = rpc_error(
        teacher_stub.UpdateExam,
        teacher_pb2.UpdateExamRequest(exam=resources_pb2.Exam(id=draft.id)),
        metadata=teacher.metadata,
    )
    assert set(bad_request_fields(nothing)) == {"update_mask"}

    everything = exam_message(title="All", subject="", behavior_rules=[])
    everything.id = draft.id
    replaced = update(everything, ["*"])
    assert (replaced.title, replaced.subject, list(replaced.behavior_rules)) == ("All", "", [])
