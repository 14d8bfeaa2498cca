"""Probing for other people's resources leaves a trace (issue 11): NOT_FOUND and
PERMISSION_DENIED answered to a signed-in caller for a resource named by id are kept in
the audit trail, written in batches about a second later."""

from __future__ import annotations

import time
import uuid

import grpc
from veritas.v1 import admin_pb2, admin_pb2_grpc, teacher_pb2, teacher_pb2_grpc

from tests.e2e.exam_helpers import rpc_error
from tests.e2e.monitoring_helpers import scene
from veritas_grpc.domain.identity import Role


def _refusals_of(admin_stub, admin, actor_id: str, count: int, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        records = admin_stub.QueryAuditLog(
            admin_pb2.QueryAuditLogRequest(actor_id=actor_id, action="access.refused"),
            metadata=admin.metadata,
        ).records
        if len(records) >= count or time.monotonic() > deadline:
            return list(records)
        time.sleep(0.2)


def test_a_teacher_probing_for_attempts_is_on_record(channel, auth_stub, make_account):
    hidden = scene(channel, auth_stub, make_account).attempt_id
    prober, admin = make_account(Role.TEACHER), make_account(Role.ADMIN)
    teacher = teacher_pb2_grpc.TeacherServiceStub(channel)
    random_id = str(uuid.uuid4())
    for attempt_id in (hidden, random_id):
        error = rpc_error(
            teacher.GetAttemptMonitoring,
            teacher_pb2.GetAttemptMonitoringRequest(attempt_id=attempt_id),
            metadata=prober.metadata,
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND

    records = _refusals_of(admin_pb2_grpc.AdminServiceStub(channel), admin, prober.user_id, 2)

    assert {r.resource_id for r in records} == {hidden, random_id}
    assert all(r.resource_type == "attempt" and r.request_id for r in records)
    assert all(r.details["code"] == "NOT_FOUND" for r in records)
    assert all(r.details["method"].endswith("/GetAttemptMonitoring") for r in records)


def test_a_student_asking_an_admin_method_for_an_account_is_on_record(
    channel, student, make_account
):
    admin = make_account(Role.ADMIN)
    admin_stub = admin_pb2_grpc.AdminServiceStub(channel)
    target = str(uuid.uuid4())
    error = rpc_error(
        admin_stub.GetUser, admin_pb2.GetUserRequest(user_id=target), metadata=student.metadata
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    [record] = _refusals_of(admin_stub, admin, student.user_id, 1)
    assert record.resource_type == "user" and record.resource_id == target
    assert record.details["code"] == "PERMISSION_DENIED"
    assert record.actor_role  # the student, by role
