"""Refusals kept in the audit trail: batched, bounded, and nothing lost to a failed
flush (services/refusal_audit.py), and which request fields name a resource."""

from __future__ import annotations

import uuid

import pytest
from veritas.v1 import admin_pb2, monitoring_pb2, teacher_pb2

from tests.unit.fakes import FakeDatabase, principal
from veritas_grpc.domain.identity import Role
from veritas_grpc.interceptors.errors import named_resources
from veritas_grpc.services.refusal_audit import Refusal, RefusalAudit


def _refusal(actor, attempt_id: str) -> Refusal:
    return Refusal(
        actor=principal(actor),
        method="/veritas.v1.TeacherService/GetAttemptMonitoring",
        code="NOT_FOUND",
        resources={"attempt_id": attempt_id},
        peer="ipv4:127.0.0.1:5000",
        request_id="r1",
    )


def test_refusals_are_written_in_one_flush_naming_who_asked_for_what():
    db = FakeDatabase()
    teacher = db.add_user(Role.TEACHER, "Curious Teacher")
    audit = RefusalAudit(db.uow)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for attempt_id in ids:
        audit.note(_refusal(teacher, attempt_id))

    assert audit.flush() == 3
    assert audit.flush() == 0  # nothing twice
    rows = db.stores.audit
    assert [row.resource_id for row in rows] == ids
    assert {row.action for row in rows} == {"access.refused"}
    assert rows[0].actor_id == teacher.id and rows[0].resource_type == "attempt"
    assert rows[0].details["code"] == "NOT_FOUND" and rows[0].request_id == "r1"


def test_past_the_bound_refusals_are_counted_in_one_row():
    db = FakeDatabase()
    teacher = db.add_user(Role.TEACHER, "Prober")
    audit = RefusalAudit(db.uow, max_pending=5)
    for _ in range(12):
        audit.note(_refusal(teacher, str(uuid.uuid4())))

    assert audit.flush() == 6
    assert db.stores.audit[-1].details["not_kept_count"] == 7


def test_a_failed_flush_keeps_the_refusals_for_the_next():
    db = FakeDatabase()
    teacher = db.add_user(Role.TEACHER, "Prober")
    failing = {"left": 1}

    def uow():
        if failing["left"]:
            failing["left"] -= 1
            raise ConnectionError("database down")
        return db.uow()

    audit = RefusalAudit(uow)
    audit.note(_refusal(teacher, str(uuid.uuid4())))
    with pytest.raises(ConnectionError):
        audit.flush()
    assert audit.flush() == 1


@pytest.mark.parametrize(
    "request_message, named",
    [
        (teacher_pb2.GetAttemptMonitoringRequest(attempt_id="a"), {"attempt_id": "a"}),
        (monitoring_pb2.WatchExamAlertsRequest(exam_id="e"), {"exam_id": "e"}),
        (admin_pb2.GetUserRequest(user_id="u"), {"user_id": "u"}),
        (teacher_pb2.RevokeAllowanceRequest(allowance_id="l"), {"allowance_id": "l"}),
        (teacher_pb2.GetAttemptMonitoringRequest(), {}),  # names nothing
        (iter([]), {}),  # a client stream
    ],
)
def test_the_resource_fields_a_request_names(request_message, named):
    assert named_resources(request_message) == named
