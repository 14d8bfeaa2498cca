"""Allowances through a real server: granted, listed and revoked by teachers, honoured by
StartAttempt, the deadline and the time-out sweep, shown to the student without their
note, refused for bad input with nothing written, exported and erased with the student."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from sqlalchemy import select, text, update
from veritas.v1 import (
    admin_pb2,
    auth_pb2,
    common_pb2,
    resources_pb2,
    student_pb2,
    teacher_pb2,
)

from tests.e2e.exam_helpers import (
    available,
    open_window,
    published_exam,
    rpc_error,
    start,
    stubs,
    submit,
)
from tests.e2e.exam_helpers import timestamp as stamp
from tests.support import bad_request_fields
from veritas_grpc.bootstrap import audit_chain_keys
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import AuditLog, ExamAllowance, ExamAttempt
from veritas_grpc.domain.allowances import ExtraTime as ExtraTimeTerms
from veritas_grpc.domain.errors import NotFound as NotFoundError
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services.allowances import AllowanceService
from veritas_grpc.services.attempts import AttemptService
from veritas_grpc.services.auth import utc_now
from veritas_grpc.services.data_subjects import DataSubjects

NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
IN_PROGRESS = common_pb2.ATTEMPT_STATUS_IN_PROGRESS
TIMED_OUT = common_pb2.ATTEMPT_STATUS_TIMED_OUT
SUBMITTED = common_pb2.ATTEMPT_STATUS_SUBMITTED
GRACE = timedelta(seconds=120)
NOTE = "NOTE-7f3a: dyslexia, a reader in the room"


@pytest.fixture
def apis(channel):
    return stubs(channel)


@pytest.fixture
def teacher(make_account):
    return make_account(Role.TEACHER)


def extra_time(**amount) -> resources_pb2.AllowanceTerms:
    return resources_pb2.AllowanceTerms(extra_time=resources_pb2.ExtraTime(**amount))


def extra_attempts(count: int) -> resources_pb2.AllowanceTerms:
    return resources_pb2.AllowanceTerms(extra_attempts=resources_pb2.ExtraAttempts(count=count))


def window(opens: datetime, closes: datetime | None) -> resources_pb2.AllowanceTerms:
    message = resources_pb2.PersonalWindow(open_time=stamp(opens))
    if closes is not None:
        message.close_time.CopyFrom(stamp(closes))
    return resources_pb2.AllowanceTerms(personal_window=message)


def exemption(*types: str) -> resources_pb2.AllowanceTerms:
    return resources_pb2.AllowanceTerms(
        event_exemption=resources_pb2.EventExemption(event_types=types)
    )


def grant(teacher_stub, who, exam_id, student_id, terms, note=NOTE, request_id=""):
    return teacher_stub.GrantAllowance(
        teacher_pb2.GrantAllowanceRequest(
            exam_id=exam_id,
            student_id=student_id,
            allowance=terms,
            note=note,
            request_id=request_id,
        ),
        metadata=who.metadata,
    )


def listed(teacher_stub, who, exam_id, **paging) -> teacher_pb2.ListAllowancesResponse:
    return teacher_stub.ListAllowances(
        teacher_pb2.ListAllowancesRequest(exam_id=exam_id, **paging), metadata=who.metadata
    )


def revoke(teacher_stub, who, allowance_id) -> resources_pb2.Allowance:
    return teacher_stub.RevokeAllowance(
        teacher_pb2.RevokeAllowanceRequest(allowance_id=allowance_id), metadata=who.metadata
    ).allowance


def own_attempt(student_stub, student, attempt_id) -> student_pb2.GetAttemptResponse:
    return student_stub.GetAttempt(
        student_pb2.GetAttemptRequest(attempt_id=attempt_id), metadata=student.metadata
    )


def sweep_at(services, when: datetime) -> int:
    """The time-out sweep as it would run at `when` (the server's own grace)."""
    factory = make_session_factory(services.engine)
    sweeper = AttemptService(
        lambda: SqlAlchemyUnitOfWork(factory), lambda: when, Decimal("0.5"), GRACE
    )
    return sweeper.sweep_overdue()


def caller(account, role: Role) -> Principal:
    """The account as the signed-in caller of an in-process use case."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    return Principal(uuid.UUID(account.user_id), role, "jti", uuid.uuid4(), expires)


def submit_at(services, student, attempt_id: str, when: datetime) -> None:
    """SubmitAttempt as the server would answer it at `when` (the server's own grace)."""
    factory = make_session_factory(services.engine)
    attempts = AttemptService(
        lambda: SqlAlchemyUnitOfWork(factory), lambda: when, Decimal("0.5"), GRACE
    )
    attempts.submit(caller(student, Role.STUDENT), attempt_id)


def minutes_between(later, earlier) -> float:
    return (later.ToDatetime() - earlier.ToDatetime()).total_seconds() / 60


def test_grant_list_revoke_round_trip_with_request_id_replay(apis, teacher, make_account, services):
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    students = [make_account(Role.STUDENT) for _ in range(3)]
    granted = grant(
        teacher_stub,
        teacher,
        exam.id,
        students[0].user_id,
        extra_time(minutes=15),
        request_id="grant-1",
    ).allowance
    assert (granted.exam_id, granted.student_id, granted.granter_id) == (
        exam.id,
        students[0].user_id,
        teacher.user_id,
    )
    assert granted.terms.extra_time.minutes == 15 and granted.note == NOTE
    assert granted.student_name == "Test student"
    assert granted.HasField("grant_time") and not granted.HasField("revoke_time")

    # The same request again, even with other terms: the first answer, nothing written.
    replayed = grant(
        teacher_stub,
        teacher,
        exam.id,
        students[0].user_id,
        extra_time(minutes=99),
        request_id="grant-1",
    ).allowance
    assert replayed == granted
    assert list(listed(teacher_stub, teacher, exam.id).allowances) == [granted]

    for student in students[1:]:
        grant(teacher_stub, teacher, exam.id, student.user_id, extra_attempts(1))
    first = listed(teacher_stub, teacher, exam.id, page_size=2)
    assert len(first.allowances) == 2 and first.next_page_token
    second = listed(teacher_stub, teacher, exam.id, page_size=2, page_token=first.next_page_token)
    assert len(second.allowances) == 1 and not second.next_page_token
    pages = [*first.allowances, *second.allowances]
    assert {a.student_id for a in pages} == {s.user_id for s in students}
    assert [(a.student_name, a.id) for a in pages] == sorted((a.student_name, a.id) for a in pages)
    too_big = rpc_error(listed, teacher_stub, teacher, exam.id, page_size=201)
    assert too_big.code() == INVALID and "page_size" in bad_request_fields(too_big)

    revoked = revoke(teacher_stub, teacher, granted.id)
    assert revoked.id == granted.id and revoked.HasField("revoke_time")
    assert granted.id not in {a.id for a in listed(teacher_stub, teacher, exam.id).allowances}
    again = rpc_error(revoke, teacher_stub, teacher, granted.id)
    assert again.code() == PRECONDITION

    with make_session_factory(services.engine)() as session:
        rows = session.execute(
            select(AuditLog.action, AuditLog.details).where(
                AuditLog.actor_id == uuid.UUID(teacher.user_id),
                AuditLog.action.like("allowance.%"),
            )
        ).all()
    actions = [action for action, _ in rows]
    assert actions.count("allowance.grant") == 3  # the replay wrote nothing
    assert "allowance.list" in actions and actions.count("allowance.revoke") == 1
    assert all("NOTE-7f3a" not in str(details) for _, details in rows)


def test_half_again_the_time_for_one_student_of_two_and_the_sweep(
    apis, teacher, make_account, services
):
    student_stub, teacher_stub = apis
    exam = published_exam(
        teacher_stub, teacher.metadata, duration_minutes=60, **open_window(hours=4)
    )
    extended, ordinary = make_account(Role.STUDENT), make_account(Role.STUDENT)
    grant(teacher_stub, teacher, exam.id, extended.user_id, extra_time(percent_of_duration=50))
    long_one = start(student_stub, extended, exam.id)
    short_one = start(student_stub, ordinary, exam.id)
    assert minutes_between(long_one.deadline_time, long_one.start_time) == 90
    assert long_one.extra_time_minutes == 30
    assert minutes_between(short_one.deadline_time, short_one.start_time) == 60
    assert short_one.extra_time_minutes == 0

    past_normal = short_one.deadline_time.ToDatetime(tzinfo=UTC) + GRACE + timedelta(seconds=1)
    sweep_at(services, past_normal)
    assert own_attempt(student_stub, ordinary, short_one.id).attempt.status == TIMED_OUT
    assert own_attempt(student_stub, extended, long_one.id).attempt.status == IN_PROGRESS

    past_extended = long_one.deadline_time.ToDatetime(tzinfo=UTC) + GRACE + timedelta(seconds=1)
    sweep_at(services, past_extended)
    assert own_attempt(student_stub, extended, long_one.id).attempt.status == TIMED_OUT


def test_extra_time_granted_mid_attempt_moves_the_running_deadline(
    apis, teacher, student, services
):
    student_stub, teacher_stub = apis
    exam = published_exam(
        teacher_stub, teacher.metadata, duration_minutes=60, **open_window(hours=4)
    )
    running = start(student_stub, student, exam.id)
    granted = grant(teacher_stub, teacher, exam.id, student.user_id, extra_time(minutes=20))
    [moved] = granted.extended_attempts
    assert moved.id == running.id and moved.extra_time_minutes == 20
    assert minutes_between(moved.deadline_time, moved.start_time) == 80
    seen = own_attempt(student_stub, student, running.id).attempt
    assert seen.extra_time_minutes == 20 and seen.deadline_time == moved.deadline_time
    # Another kind moves no deadline.
    other = grant(teacher_stub, teacher, exam.id, student.user_id, extra_attempts(1))
    assert list(other.extended_attempts) == []
    # The sweep at the old deadline leaves it running.
    sweep_at(services, running.deadline_time.ToDatetime(tzinfo=UTC) + GRACE + timedelta(seconds=1))
    assert own_attempt(student_stub, student, running.id).attempt.status == IN_PROGRESS
    submit(student_stub, student, running.id)  # no running attempt left for later sweeps


def test_extra_attempts_allow_a_third_start(apis, teacher, student):
    student_stub, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, max_attempts=2, **open_window())
    for _ in range(2):
        submit(student_stub, student, start(student_stub, student, exam.id).id)
    assert rpc_error(start, student_stub, student, exam.id).code() == PRECONDITION
    grant(teacher_stub, teacher, exam.id, student.user_id, extra_attempts(1))
    seen = available(student_stub, student)[exam.id]
    assert (seen.extra_attempt_count, seen.used_attempt_count) == (1, 2)
    assert seen.remaining_attempt_count == 1
    third = start(student_stub, student, exam.id)
    assert third.attempt_number == 3
    submit(student_stub, student, third.id)
    assert rpc_error(start, student_stub, student, exam.id).code() == PRECONDITION


def test_a_personal_window_replaces_the_exam_s(apis, teacher, make_account):
    student_stub, teacher_stub = apis
    now = datetime.now(UTC)
    closed = published_exam(
        teacher_stub,
        teacher.metadata,
        open_time=stamp(now - timedelta(hours=3)),
        close_time=stamp(now - timedelta(hours=1)),
    )
    late, early = make_account(Role.STUDENT), make_account(Role.STUDENT)
    assert rpc_error(start, student_stub, late, closed.id).code() == PRECONDITION
    assert closed.id not in available(student_stub, late)
    opens, closes = now - timedelta(minutes=5), now + timedelta(minutes=30)
    grant(teacher_stub, teacher, closed.id, late.user_id, window(opens, closes))
    seen = available(student_stub, late)[closed.id]
    assert seen.open_time == stamp(opens) and seen.close_time == stamp(closes)
    attempt = start(student_stub, late, closed.id)
    # The 60-minute deadline is capped by the close of the student's own window.
    assert attempt.deadline_time == stamp(closes)
    submit(student_stub, late, attempt.id)  # its deadline is near: no later sweep may find it
    assert closed.id not in available(student_stub, early)  # the others' window stays

    # Open to everyone else, but this student's own window is tomorrow.
    open_exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    tomorrow = now + timedelta(days=1)
    grant(
        teacher_stub,
        teacher,
        open_exam.id,
        early.user_id,
        window(tomorrow, tomorrow + timedelta(hours=2)),
    )
    assert open_exam.id not in available(student_stub, early)
    assert rpc_error(start, student_stub, early, open_exam.id).code() == PRECONDITION
    assert open_exam.id in available(student_stub, late)


def test_revoking_before_the_start_restores_the_defaults(apis, teacher, student):
    student_stub, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window(hours=4))
    granted = grant(teacher_stub, teacher, exam.id, student.user_id, extra_time(minutes=30))
    assert available(student_stub, student)[exam.id].extra_time_minutes == 30
    revoke(teacher_stub, teacher, granted.allowance.id)
    assert available(student_stub, student)[exam.id].extra_time_minutes == 0
    attempt = start(student_stub, student, exam.id)
    assert attempt.extra_time_minutes == 0
    assert minutes_between(attempt.deadline_time, attempt.start_time) == 60
    submit(student_stub, student, attempt.id)


def test_one_standing_allowance_per_kind(apis, teacher, student):
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    first = grant(teacher_stub, teacher, exam.id, student.user_id, extra_time(minutes=10))
    second = rpc_error(
        grant, teacher_stub, teacher, exam.id, student.user_id, extra_time(minutes=5)
    )
    assert second.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "revoke it first" in second.details()
    grant(teacher_stub, teacher, exam.id, student.user_id, exemption("voice_detected"))
    revoke(teacher_stub, teacher, first.allowance.id)
    grant(teacher_stub, teacher, exam.id, student.user_id, extra_time(minutes=5))
    kinds = sorted(
        a.terms.WhichOneof("kind") for a in listed(teacher_stub, teacher, exam.id).allowances
    )
    assert kinds == ["event_exemption", "extra_time"]


NOW = datetime.now(UTC)
BAD_TERMS = [
    (extra_time(minutes=-5), "allowance.extra_time.minutes"),
    (extra_time(minutes=601), "allowance.extra_time.minutes"),  # > 10 x 60
    (extra_time(percent_of_duration=1001), "allowance.extra_time.percent_of_duration"),
    (extra_time(), "allowance.extra_time"),
    (extra_attempts(-1), "allowance.extra_attempts.count"),
    (extra_attempts(21), "allowance.extra_attempts.count"),  # > 10 x 2
    (
        window(NOW + timedelta(days=2), NOW + timedelta(days=1)),
        "allowance.personal_window.close_time",
    ),
    (window(NOW, None), "allowance.personal_window.close_time"),
    (exemption("voice_detected", "Voice-Detected"), "allowance.event_exemption.event_types[1]"),
    (resources_pb2.AllowanceTerms(), "allowance"),
]


@pytest.mark.parametrize(("terms", "field"), BAD_TERMS, ids=[f for _, f in BAD_TERMS])
def test_bad_terms_are_invalid_and_write_nothing(apis, teacher, student, terms, field):
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, max_attempts=2, **open_window())
    error = rpc_error(grant, teacher_stub, teacher, exam.id, student.user_id, terms)
    assert error.code() == INVALID
    assert field in bad_request_fields(error), bad_request_fields(error)
    assert list(listed(teacher_stub, teacher, exam.id).allowances) == []


def test_bad_requests_are_refused_and_write_nothing(apis, teacher, make_account, student):
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    other_teacher = make_account(Role.TEACHER)
    terms = extra_time(minutes=10)
    for student_id in (str(uuid.uuid4()), other_teacher.user_id, teacher.user_id):
        error = rpc_error(grant, teacher_stub, teacher, exam.id, student_id, terms)
        assert (error.code(), error.details()) == (NOT_FOUND, "student not found")
    for exam_id, student_id, note, request_id, field in (
        ("nope", student.user_id, "", "", "exam_id"),
        (exam.id, "nope", "", "", "student_id"),
        (exam.id, student.user_id, "x" * 2001, "", "note"),
        (exam.id, student.user_id, "", "r" * 65, "request_id"),
    ):
        error = rpc_error(
            grant, teacher_stub, teacher, exam_id, student_id, terms, note, request_id
        )
        assert error.code() == INVALID and field in bad_request_fields(error)
    assert rpc_error(revoke, teacher_stub, teacher, "nope").code() == INVALID
    assert list(listed(teacher_stub, teacher, exam.id).allowances) == []


def test_who_may_manage_and_who_may_see(apis, teacher, make_account, student):
    student_stub, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    viewer, stranger, admin = (make_account(r) for r in (Role.TEACHER, Role.TEACHER, Role.ADMIN))
    teacher_stub.GrantExamAccess(
        teacher_pb2.GrantExamAccessRequest(
            exam_id=exam.id, teacher_id=viewer.user_id, access_level=common_pb2.ACCESS_LEVEL_VIEW
        ),
        metadata=teacher.metadata,
    )
    granted = grant(teacher_stub, admin, exam.id, student.user_id, extra_time(minutes=10))
    allowance_id = granted.allowance.id
    terms = extra_attempts(1)

    assert rpc_error(grant, teacher_stub, viewer, exam.id, student.user_id, terms).code() == DENIED
    assert rpc_error(revoke, teacher_stub, viewer, allowance_id).code() == DENIED
    [seen] = listed(teacher_stub, viewer, exam.id).allowances
    assert seen.note == NOTE  # teachers with access see the note

    assert rpc_error(grant, teacher_stub, stranger, exam.id, student.user_id, terms).code() == (
        NOT_FOUND
    )
    assert rpc_error(listed, teacher_stub, stranger, exam.id).code() == NOT_FOUND
    hidden = rpc_error(revoke, teacher_stub, stranger, allowance_id)
    absent = rpc_error(revoke, teacher_stub, stranger, str(uuid.uuid4()))
    assert (hidden.code(), hidden.details()) == (absent.code(), absent.details())
    assert hidden.code() == NOT_FOUND

    for call in (
        lambda: grant(teacher_stub, student, exam.id, student.user_id, terms),
        lambda: listed(teacher_stub, student, exam.id),
        lambda: revoke(teacher_stub, student, allowance_id),
    ):
        assert rpc_error(call).code() == DENIED
    assert listed(teacher_stub, teacher, exam.id).allowances[0].id == allowance_id

    teacher_stub.ArchiveExam(
        teacher_pb2.ArchiveExamRequest(exam_id=exam.id), metadata=teacher.metadata
    )
    archived = rpc_error(grant, teacher_stub, teacher, exam.id, student.user_id, terms)
    assert archived.code() == PRECONDITION


def test_the_student_sees_their_extra_time_never_the_note(apis, teacher, student):
    student_stub, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window(hours=4))
    grant(teacher_stub, teacher, exam.id, student.user_id, extra_time(minutes=25))
    grant(teacher_stub, teacher, exam.id, student.user_id, exemption("voice_detected"))
    answers = [start(student_stub, student, exam.id)]
    attempt = answers[0]
    answers.append(own_attempt(student_stub, student, attempt.id))
    assert answers[-1].attempt.extra_time_minutes == 25
    assert minutes_between(answers[-1].attempt.deadline_time, attempt.start_time) == 85
    answers.append(available(student_stub, student)[exam.id])
    assert answers[-1].extra_time_minutes == 25
    answers.append(
        student_stub.GetStudentDashboard(
            student_pb2.GetStudentDashboardRequest(), metadata=student.metadata
        )
    )
    answers.append(submit(student_stub, student, attempt.id))
    for answer in answers:
        assert b"NOTE-7f3a" not in answer.SerializeToString()


def test_export_holds_the_allowances_and_erasure_removes_them(
    apis, teacher, student, admin, admin_stub, auth_stub, services
):
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    revoked = grant(teacher_stub, teacher, exam.id, student.user_id, extra_time(minutes=10))
    revoke(teacher_stub, teacher, revoked.allowance.id)
    grant(teacher_stub, teacher, exam.id, student.user_id, exemption("voice_detected"))

    records = [
        record
        for chunk in admin_stub.ExportStudentData(
            admin_pb2.ExportStudentDataRequest(student_id=student.user_id),
            metadata=admin.metadata,
        )
        for record in chunk.records
    ]
    exported = {r.data["id"]: r.data for r in records if r.kind == "allowance"}
    assert revoked.allowance.id in exported and len(exported) == 2
    first = exported[revoked.allowance.id]
    assert first["kind"] == "EXTRA_TIME" and first["extra_minutes"] == 10
    assert first["note"] == NOTE and first["revoked_at"] and first["granted_at"]
    assert first["exam_title"] == exam.title

    email = auth_stub.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=student.metadata
    ).user.email
    admin_stub.EraseStudent(
        admin_pb2.EraseStudentRequest(student_id=student.user_id, confirm_email=email),
        metadata=admin.metadata,
    )
    assert list(listed(teacher_stub, teacher, exam.id).allowances) == []
    erased = rpc_error(grant, teacher_stub, teacher, exam.id, student.user_id, extra_attempts(1))
    assert (erased.code(), erased.details()) == (NOT_FOUND, "student not found")
    with make_session_factory(services.engine)() as session:
        left = session.scalars(
            select(ExamAllowance.id).where(ExamAllowance.student_id == uuid.UUID(student.user_id))
        ).all()
    assert left == []


def test_concurrent_replays_of_one_grant_make_one_allowance(apis, teacher, student):
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())

    def send(_):
        return grant(
            teacher_stub,
            teacher,
            exam.id,
            student.user_id,
            extra_time(minutes=10),
            request_id="same-grant",
        ).allowance.id

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = set(pool.map(send, range(6)))
    assert len(ids) == 1
    assert [a.id for a in listed(teacher_stub, teacher, exam.id).allowances] == list(ids)


def test_available_exams_say_practice_and_its_requirement(apis, teacher, student):
    student_stub, teacher_stub = apis
    practice = published_exam(teacher_stub, teacher.metadata, practice=True, **open_window())
    real = published_exam(
        teacher_stub, teacher.metadata, required_practice_exam_id=practice.id, **open_window()
    )
    seen = available(student_stub, student)
    assert seen[practice.id].practice and not seen[real.id].practice
    assert seen[real.id].required_practice_exam_id == practice.id
    assert not seen[real.id].required_practice_completed
    assert seen[practice.id].required_practice_exam_id == ""
    submit(student_stub, student, start(student_stub, student, practice.id).id)
    assert available(student_stub, student)[real.id].required_practice_completed


def test_a_stranger_revoking_an_allowance_is_on_record(
    apis, teacher, student, make_account, admin, admin_stub
):
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    allowance_id = grant(
        teacher_stub, teacher, exam.id, student.user_id, extra_attempts(1)
    ).allowance.id
    stranger = make_account(Role.TEACHER)
    assert rpc_error(revoke, teacher_stub, stranger, allowance_id).code() == NOT_FOUND
    query = admin_pb2.QueryAuditLogRequest(actor_id=stranger.user_id, action="access.refused")
    deadline = time.monotonic() + 10  # refusals are written in batches, about a second later
    while not (records := admin_stub.QueryAuditLog(query, metadata=admin.metadata).records):
        assert time.monotonic() < deadline, "the refusal was never written"
        time.sleep(0.2)
    assert [(r.resource_type, r.resource_id) for r in records] == [("allowance", allowance_id)]


def test_a_replay_answers_only_a_caller_who_still_manages_the_exam(
    apis, teacher, student, make_account
):
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    co_teacher = make_account(Role.TEACHER)
    own_exam = published_exam(teacher_stub, co_teacher.metadata, **open_window())
    teacher_stub.GrantExamAccess(
        teacher_pb2.GrantExamAccessRequest(
            exam_id=exam.id,
            teacher_id=co_teacher.user_id,
            access_level=common_pb2.ACCESS_LEVEL_MANAGE,
        ),
        metadata=teacher.metadata,
    )
    terms = extra_time(minutes=7)
    grant(teacher_stub, co_teacher, exam.id, student.user_id, terms, request_id="r1")
    teacher_stub.RevokeExamAccess(
        teacher_pb2.RevokeExamAccessRequest(exam_id=exam.id, teacher_id=co_teacher.user_id),
        metadata=teacher.metadata,
    )
    replay = rpc_error(
        grant, teacher_stub, co_teacher, exam.id, student.user_id, terms, request_id="r1"
    )
    assert replay.code() == NOT_FOUND and "NOTE-7f3a" not in replay.details()
    # Nor through an exam the caller does manage.
    elsewhere = rpc_error(
        grant, teacher_stub, co_teacher, own_exam.id, student.user_id, terms, request_id="r1"
    )
    assert elsewhere.code() == INVALID and "request_id" in bad_request_fields(elsewhere)
    assert list(listed(teacher_stub, co_teacher, own_exam.id).allowances) == []


def test_a_hand_in_past_the_normal_deadline_within_the_extra_time_is_accepted(
    apis, teacher, make_account, services
):
    student_stub, teacher_stub = apis
    exam = published_exam(
        teacher_stub, teacher.metadata, duration_minutes=60, **open_window(hours=4)
    )
    extended, ordinary = make_account(Role.STUDENT), make_account(Role.STUDENT)
    grant(teacher_stub, teacher, exam.id, extended.user_id, extra_time(minutes=30))
    long_one = start(student_stub, extended, exam.id)
    short_one = start(student_stub, ordinary, exam.id)
    # Past the normal deadline and its grace, well within the extended one.
    late = long_one.start_time.ToDatetime(tzinfo=UTC) + timedelta(minutes=75)
    submit_at(services, extended, long_one.id, late)
    submit_at(services, ordinary, short_one.id, late)
    assert own_attempt(student_stub, extended, long_one.id).attempt.status == SUBMITTED
    assert own_attempt(student_stub, ordinary, short_one.id).attempt.status == TIMED_OUT


def test_extra_time_granted_past_the_deadline_and_grace_revives_no_attempt(
    apis, teacher, student, services
):
    student_stub, teacher_stub = apis
    exam = published_exam(
        teacher_stub, teacher.metadata, duration_minutes=60, **open_window(hours=4)
    )
    running = start(student_stub, student, exam.id)
    # Started 70 minutes ago: the deadline and its grace have passed, the sweep has not
    # come by.
    now = datetime.now(UTC)
    with make_session_factory(services.engine)() as session:
        session.execute(
            update(ExamAttempt)
            .where(ExamAttempt.id == uuid.UUID(running.id))
            .values(started_at=now - timedelta(minutes=70), deadline_at=now - timedelta(minutes=10))
        )
        session.commit()
    granted = grant(teacher_stub, teacher, exam.id, student.user_id, extra_time(minutes=60))
    assert list(granted.extended_attempts) == []
    assert submit(student_stub, student, running.id).status == TIMED_OUT


def test_extra_time_minutes_say_what_the_window_s_close_left_of_the_grant(
    apis, teacher, make_account
):
    student_stub, teacher_stub = apis
    now = datetime.now(UTC)
    exam = published_exam(
        teacher_stub,
        teacher.metadata,
        duration_minutes=60,
        open_time=stamp(now - timedelta(minutes=5)),
        close_time=stamp(now + timedelta(minutes=75)),
    )
    before_start, mid_attempt = make_account(Role.STUDENT), make_account(Role.STUDENT)
    grant(teacher_stub, teacher, exam.id, before_start.user_id, extra_time(minutes=30))
    capped = start(student_stub, before_start, exam.id)
    # 30 granted, but the close is a little under 75 minutes after the start: 14 whole
    # minutes of extra time are in the deadline.
    assert capped.deadline_time == exam.close_time
    assert capped.extra_time_minutes == 14
    assert own_attempt(student_stub, before_start, capped.id).attempt.extra_time_minutes == 14

    running = start(student_stub, mid_attempt, exam.id)
    assert running.extra_time_minutes == 0
    granted = grant(teacher_stub, teacher, exam.id, mid_attempt.user_id, extra_time(minutes=30))
    [moved] = granted.extended_attempts
    assert moved.deadline_time == exam.close_time and moved.extra_time_minutes == 14
    assert own_attempt(student_stub, mid_attempt, running.id).attempt.extra_time_minutes == 14
    for student, attempt in ((before_start, capped), (mid_attempt, running)):
        submit(student_stub, student, attempt.id)  # no running attempt left for later sweeps


def erasing_after_the_check(services, erase) -> AllowanceService:
    """Allowances whose grant runs `erase` after its (unlocked) check of the student and
    before its insert: between the two, it reads the standing allowances."""
    factory = make_session_factory(services.engine)

    class ErasingUnitOfWork(SqlAlchemyUnitOfWork):
        def __enter__(self) -> SqlAlchemyUnitOfWork:
            uow = super().__enter__()
            standing = uow.allowances.standing

            def erase_then_read(*args):
                erase()
                return standing(*args)

            uow.allowances.standing = erase_then_read
            return uow

    return AllowanceService(
        lambda: ErasingUnitOfWork(factory), lambda: datetime.now(UTC), Decimal("0.5"), GRACE
    )


def allowance_notes_of(services, student) -> list[str]:
    with make_session_factory(services.engine)() as session:
        return session.scalars(
            select(ExamAllowance.note).where(ExamAllowance.student_id == uuid.UUID(student.user_id))
        ).all()


def test_an_erasure_committed_mid_grant_leaves_no_allowance(
    apis, teacher, student, make_account, services
):
    """The erasure commits after the grant checked the student, before it wrote."""
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    admin = caller(make_account(Role.ADMIN), Role.ADMIN)

    def erase() -> None:  # on a connection of its own, to its commit
        with ThreadPoolExecutor(max_workers=1) as pool:
            erase_student = services.data_subjects.erase
            pool.submit(erase_student, admin, student.user_id, student.email).result(timeout=30)

    allowances = erasing_after_the_check(services, erase)
    with pytest.raises(NotFoundError, match="student not found"):
        allowances.grant(
            caller(teacher, Role.TEACHER), exam.id, student.user_id, ExtraTimeTerms(5), NOTE
        )
    assert allowance_notes_of(services, student) == []


def test_an_erasure_in_flight_while_the_grant_writes_leaves_no_allowance(
    apis, teacher, student, make_account, services, settings
):
    """The erasure has locked the account and not committed when the grant inserts: the
    insert waits for it, then the grant sees the student erased."""
    _, teacher_stub = apis
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    admin = caller(make_account(Role.ADMIN), Role.ADMIN)
    at_commit, release = threading.Event(), threading.Event()
    factory = make_session_factory(services.engine)

    class HeldAtCommit(SqlAlchemyUnitOfWork):
        def commit(self) -> None:
            at_commit.set()
            assert release.wait(30), "the grant's insert never waited on the erasure"
            super().commit()

    eraser = DataSubjects(lambda: HeldAtCommit(factory), audit_chain_keys(settings), utc_now)
    with ThreadPoolExecutor(max_workers=2) as pool:
        erasing = []

        def erase() -> None:
            erasing.append(pool.submit(eraser.erase, admin, student.user_id, student.email))
            assert at_commit.wait(30), "the erasure did not reach its commit"

        allowances = erasing_after_the_check(services, erase)
        granting = pool.submit(
            allowances.grant,
            caller(teacher, Role.TEACHER),
            exam.id,
            student.user_id,
            ExtraTimeTerms(5),
            NOTE,
        )
        deadline = time.monotonic() + 30
        while not inserts_waiting_on_a_lock(services):
            assert time.monotonic() < deadline and not granting.done(), granting
            time.sleep(0.05)
        release.set()
        erasing[0].result(timeout=30)
        with pytest.raises(NotFoundError, match="student not found"):
            granting.result(timeout=30)
    assert allowance_notes_of(services, student) == []


def inserts_waiting_on_a_lock(services) -> bool:
    with services.engine.connect() as connection:
        return bool(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query ILIKE 'INSERT INTO exam_allowances%'"
                )
            ).scalar()
        )
