"""A unary call's token check waits for the call's first transaction on the primary
(services/token_checks.py), or for its end: a revoked token still gets UNAUTHENTICATED
and nothing else, whatever the call would have answered a good token, and a call
refused so writes nothing and leaves no refusal in the audit trail."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest
from sqlalchemy import event, func, select
from veritas.v1 import (
    admin_pb2,
    auth_pb2,
    student_pb2,
    student_pb2_grpc,
    teacher_pb2,
    teacher_pb2_grpc,
)

from tests.e2e.conftest import login
from tests.e2e.exam_helpers import exam_message, rpc_error
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import AuditLog, Exam
from veritas_grpc.domain.identity import Role
from veritas_grpc.repositories.auth_tokens import _ACCESS_IS_VALID

CALLS = {
    # answered before any transaction: a request check, a role refusal
    "bad exam id": (
        "student",
        lambda ch: student_pb2_grpc.StudentServiceStub(ch).StartAttempt,
        student_pb2.StartAttemptRequest(exam_id="not-an-id"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "a teacher's method": (
        "student",
        lambda ch: teacher_pb2_grpc.TeacherServiceStub(ch).GetTeacherDashboard,
        teacher_pb2.GetTeacherDashboardRequest(),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    # answered from a transaction: the check is its first statement
    "someone else's attempt": (
        "student",
        lambda ch: student_pb2_grpc.StudentServiceStub(ch).GetAttempt,
        student_pb2.GetAttemptRequest(attempt_id=str(uuid.uuid4())),
        grpc.StatusCode.NOT_FOUND,
    ),
    "an exam that is not": (
        "teacher",
        lambda ch: teacher_pb2_grpc.TeacherServiceStub(ch).PublishExam,
        teacher_pb2.PublishExamRequest(exam_id=str(uuid.uuid4())),
        grpc.StatusCode.NOT_FOUND,
    ),
}


@pytest.fixture
def session_factory(services):
    return make_session_factory(services.engine)


def _revoked(auth_stub, make_account, role: str):
    """A signed-in account of that role, and the same account's token after Logout."""
    signed_in = make_account(Role(role))
    signed_out = login(auth_stub, signed_in.email)
    auth_stub.Logout(
        auth_pb2.LogoutRequest(refresh_token=signed_out.refresh_token),
        metadata=signed_out.metadata,
    )
    return signed_in, signed_out


def _audit_rows(server, session_factory, actor_id: str) -> int:
    """The actor's audit rows, refusals included (they are written in batches: flushed)."""
    server.running.services.refusals.flush()
    with session_factory() as session:
        return session.scalar(select(func.count()).where(AuditLog.actor_id == uuid.UUID(actor_id)))


@pytest.mark.parametrize("case", CALLS)
def test_a_revoked_token_is_unauthenticated_whatever_else_the_call_would_answer(
    server, channel, auth_stub, make_account, session_factory, case
):
    role, stub_method, request, good_token_answer = CALLS[case]
    signed_in, signed_out = _revoked(auth_stub, make_account, role)
    call = stub_method(channel)
    assert rpc_error(call, request, metadata=signed_in.metadata).code() == good_token_answer
    audited = _audit_rows(server, session_factory, signed_out.user_id)
    refused = rpc_error(call, request, metadata=signed_out.metadata)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.details() == "invalid or missing credentials"
    assert dict(refused.trailing_metadata())["x-request-id"]
    assert _audit_rows(server, session_factory, signed_out.user_id) == audited


@pytest.mark.parametrize("revocation", ["DeactivateUser", "RevokeSessions"])
def test_an_admins_revocation_refuses_every_kind_of_answer(
    channel, auth_stub, admin_stub, admin, make_account, revocation
):
    """The account's own token, after an admin ends its sessions or deactivates it."""
    teacher = make_account(Role.TEACHER)
    if revocation == "DeactivateUser":
        request = admin_pb2.DeactivateUserRequest(user_id=teacher.user_id, reason="test")
        admin_stub.DeactivateUser(request, metadata=admin.metadata)
    else:
        request = admin_pb2.RevokeSessionsRequest(user_id=teacher.user_id)
        admin_stub.RevokeSessions(request, metadata=admin.metadata)
    teach = teacher_pb2_grpc.TeacherServiceStub(channel)
    for call, request in (
        (auth_stub.GetCurrentUser, auth_pb2.GetCurrentUserRequest()),
        (teach.PublishExam, teacher_pb2.PublishExamRequest(exam_id="not-an-id")),
        (teach.PublishExam, teacher_pb2.PublishExamRequest(exam_id=str(uuid.uuid4()))),
        (admin_stub.ListUsers, admin_pb2.ListUsersRequest()),
    ):
        refused = rpc_error(call, request, metadata=teacher.metadata)
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED, call


def test_a_revoked_token_writes_nothing(channel, auth_stub, make_account, session_factory):
    teacher, signed_out = _revoked(auth_stub, make_account, "teacher")
    stub = teacher_pb2_grpc.TeacherServiceStub(channel)
    title = f"Never created {uuid.uuid4().hex[:8]}"
    request = teacher_pb2.CreateExamRequest(exam=exam_message(title=title))
    refused = rpc_error(stub.CreateExam, request, metadata=signed_out.metadata)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    with session_factory() as session:
        assert session.scalar(select(func.count()).where(Exam.title == title)) == 0
    stub.CreateExam(request, metadata=teacher.metadata)  # the same request, a good token
    with session_factory() as session:
        assert session.scalar(select(func.count()).where(Exam.title == title)) == 1


def test_a_good_token_is_checked_once_per_call(server, auth_stub, make_account):
    """GetCurrentUser with a good token: its first statement is the check, made once."""
    signed_in = make_account(Role.STUDENT)
    engine = server.running.services.engine
    sent: list[str] = []

    def record(_connection, _cursor, statement, *_):
        if threading.current_thread().name.startswith("veritas-db"):  # not health probes
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=signed_in.metadata)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    check = _ACCESS_IS_VALID.name  # the prepared statement's
    assert sum(s.startswith(f"EXECUTE {check}") for s in sent) == 1
    assert check in sent[0]  # its PREPARE on a new connection, else its EXECUTE
