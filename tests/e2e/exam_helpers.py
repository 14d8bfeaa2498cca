"""Helpers for the exam e2e tests: stubs, and exams built through the real API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from veritas.v1 import (
    common_pb2,
    resources_pb2,
    student_pb2,
    student_pb2_grpc,
    teacher_pb2,
    teacher_pb2_grpc,
)


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def exam_message(**overrides) -> resources_pb2.Exam:
    fields = {
        "title": "Algorithms midterm",
        "subject": "CS201",
        "description": "Sorting and graphs",
        "max_points": 100,
        "pass_points": 50,
        "duration_minutes": 60,
        "max_attempts": 2,
        "behavior_rules": [
            resources_pb2.BehaviorRule(
                event_type="tab_switch",
                flagged=True,
                weight=2.5,
                default_severity=common_pb2.SEVERITY_WARNING,
            )
        ],
    }
    fields.update(overrides)
    return resources_pb2.Exam(**fields)


def published_exam(teacher_stub, metadata, **overrides) -> resources_pb2.Exam:
    created = teacher_stub.CreateExam(
        teacher_pb2.CreateExamRequest(exam=exam_message(**overrides)), metadata=metadata
    ).exam
    return teacher_stub.PublishExam(
        teacher_pb2.PublishExamRequest(exam_id=created.id), metadata=metadata
    ).exam


def open_window(hours: int = 2) -> dict:
    now = datetime.now(UTC)
    return {
        "open_time": timestamp(now - timedelta(minutes=5)),
        "close_time": timestamp(now + timedelta(hours=hours)),
    }


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(*args, **kwargs)
    return error.value


def stubs(channel):
    return (
        student_pb2_grpc.StudentServiceStub(channel),
        teacher_pb2_grpc.TeacherServiceStub(channel),
    )


def start(student_stub, student, exam_id) -> student_pb2.StudentAttempt:
    return student_stub.StartAttempt(
        student_pb2.StartAttemptRequest(exam_id=exam_id), metadata=student.metadata
    ).attempt


def submit(student_stub, student, attempt_id) -> student_pb2.StudentAttempt:
    return student_stub.SubmitAttempt(
        student_pb2.SubmitAttemptRequest(attempt_id=attempt_id), metadata=student.metadata
    ).attempt


def available(student_stub, student) -> dict[str, student_pb2.AvailableExam]:
    """Every exam open to the student (the whole test database's: paged through)."""
    found, token = {}, ""
    while True:
        page = student_stub.ListAvailableExams(
            student_pb2.ListAvailableExamsRequest(page_size=100, page_token=token),
            metadata=student.metadata,
        )
        found.update({exam.exam_id: exam for exam in page.exams})
        token = page.next_page_token
        if not token:
            return found
