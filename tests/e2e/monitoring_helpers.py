"""Helpers for the monitoring e2e tests: attempts to write to, and events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from veritas.v1 import common_pb2, monitoring_pb2, monitoring_pb2_grpc, resources_pb2

from tests.e2e.conftest import SignedIn, register_and_login
from tests.e2e.exam_helpers import open_window, published_exam, start, stubs, timestamp
from veritas_grpc.domain.identity import Role


@dataclass
class Scene:
    teacher: SignedIn
    student: SignedIn
    exam_id: str
    attempt_id: str


def scene(channel, auth_stub, make_account, **exam_fields) -> Scene:
    """A teacher's published exam and a student's attempt in progress."""
    student_stub, teacher_stub = stubs(channel)
    teacher = make_account(Role.TEACHER)
    exam = published_exam(teacher_stub, teacher.metadata, **open_window(), **exam_fields)
    student = register_and_login(auth_stub)
    attempt = start(student_stub, student, exam.id)
    return Scene(teacher, student, exam.id, attempt.id)


def event(attempt_id: str, **fields) -> resources_pb2.MonitoringEvent:
    values = {
        "event_id": str(uuid.uuid4()),
        "attempt_id": attempt_id,
        "event_type": "eye_movement",
        "occur_time": timestamp(datetime.now(UTC) - timedelta(seconds=1)),
        "data_json": '{"gaze_x": 0.31, "duration_ms": 1200}',
    }
    values.update(fields)
    return resources_pb2.MonitoringEvent(**values)


def critical(attempt_id: str, **fields) -> resources_pb2.MonitoringEvent:
    return event(
        attempt_id,
        event_type="multiple_faces",
        severity=common_pb2.SEVERITY_CRITICAL,
        is_anomaly=True,
        description="two faces in view",
        **fields,
    )


def stream(channel, metadata, messages, timeout=60) -> monitoring_pb2.StreamEventsResponse:
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    requests = (monitoring_pb2.StreamEventsRequest(events=batch) for batch in messages)
    return stub.StreamEvents(requests, metadata=metadata, timeout=timeout)
