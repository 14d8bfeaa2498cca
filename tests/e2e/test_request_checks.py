"""Requests the server cannot take as sent get a clear, bounded answer with a request id:
bytes that do not parse, strings holding U+0000, requests with thousands of bad fields,
messages over the size limit; and grpc.health.v1.Health/List answers (issue 10)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from sqlalchemy import func, select
from veritas.v1 import (
    analysis_pb2,
    analysis_pb2_grpc,
    auth_pb2,
    monitoring_pb2,
    monitoring_pb2_grpc,
    resources_pb2,
    teacher_pb2,
    teacher_pb2_grpc,
)

from tests.e2e.exam_helpers import exam_message, rpc_error
from tests.e2e.monitoring_helpers import event, scene, stream
from tests.support import PASSWORD, bad_request_fields, unique_email, unique_enrollment
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import User
from veritas_grpc.domain.identity import Role
from veritas_grpc.observability import JsonFormatter

LOGIN = "/veritas.v1.AuthService/Login"
STREAM_EVENTS = "/veritas.v1.MonitoringService/StreamEvents"
# Field 1 (email, a string) holding bytes that are not UTF-8.
NOT_UTF8 = b"\x0a\x02\xff\xfe"
CORRUPT = b"\xff\xff\xff"
# grpc's default limit on the metadata a client accepts (headers or trailers).
CLIENT_METADATA_LIMIT = 8 * 1024


def _request_id(error: grpc.RpcError) -> str:
    return dict(error.trailing_metadata() or ())["x-request-id"]


class _FormattedLines(logging.Handler):
    """Log lines as the server writes them: formatted where they are emitted, inside the
    call, so each carries its request id."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def server_lines():
    handler = _FormattedLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(level)


def _lines_of(lines: list[dict], request_id: str, timeout: float = 5.0) -> list[dict]:
    """The log lines of one call, once its access line is written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = [line for line in lines if line.get("request_id") == request_id]
        if any(line["logger"] == "veritas.access" for line in mine):
            return mine
        time.sleep(0.02)
    return []


def _trailers_size(error: grpc.RpcError) -> int:
    metadata = error.trailing_metadata() or ()
    return sum(len(key) + len(value) for key, value in metadata) + len(error.details() or "")


# 1. Bytes that do not parse ----------------------------------------------------------


@pytest.mark.parametrize("body", [CORRUPT, NOT_UTF8], ids=["corrupt", "not-utf8"])
def test_unparseable_unary_requests_are_invalid_argument_with_a_request_id(
    channel, server_lines, body
):
    error = rpc_error(channel.unary_unary(LOGIN), body, timeout=10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "the request could not be parsed"
    mine = _lines_of(server_lines, _request_id(error))
    assert [(line["level"], line["message"]) for line in mine] == [
        ("WARNING", "request could not be parsed"),
        ("INFO", "rpc finished"),
    ]
    assert mine[-1]["status"] == "INVALID_ARGUMENT"
    assert not [line for line in server_lines if line["level"] in ("ERROR", "CRITICAL")]


def test_an_unparseable_message_inside_stream_events_is_invalid_argument(channel, student):
    good = monitoring_pb2.StreamEventsRequest(events=[event(str(uuid.uuid4()))])
    call = channel.stream_unary(STREAM_EVENTS)
    error = rpc_error(
        call, iter([good.SerializeToString(), CORRUPT]), metadata=student.metadata, timeout=10
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "the request could not be parsed"
    assert _request_id(error)


def test_an_anonymous_unparseable_request_is_still_unauthenticated(channel):
    error = rpc_error(channel.stream_unary(STREAM_EVENTS), iter([CORRUPT]), timeout=10)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


# 3. U+0000 in any string of any request --------------------------------------------


def test_nul_in_top_level_strings_names_each_field_and_writes_nothing(auth_stub, services):
    def users():
        with make_session_factory(services.engine)() as session:
            return session.scalar(select(func.count()).select_from(User))

    before = users()
    request = auth_pb2.RegisterRequest(
        email=unique_email() + "\x00",
        password=PASSWORD,
        full_name="Nul\x00Name",
        enrollment_id=unique_enrollment(),
    )
    error = rpc_error(auth_stub.Register, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error)) == {"email", "full_name"}
    assert users() == before
    login = rpc_error(auth_stub.Login, auth_pb2.LoginRequest(email="a\x00@b.edu", password="x"))
    assert set(bad_request_fields(login)) == {"email"}


def test_nul_in_nested_and_repeated_strings_names_their_paths(channel, make_account):
    teacher = make_account(Role.TEACHER)
    exam = exam_message(title="Mid\x00term")
    exam.behavior_rules[0].event_type = "tab\x00switch"
    created = rpc_error(
        teacher_pb2_grpc.TeacherServiceStub(channel).CreateExam,
        teacher_pb2.CreateExamRequest(exam=exam),
        metadata=teacher.metadata,
    )
    assert created.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(created)) == {"exam.title", "exam.behavior_rules[0].event_type"}

    service = make_account(Role.SERVICE)
    analysis = rpc_error(
        analysis_pb2_grpc.AnalysisServiceStub(channel).CreateBehaviorAnalysis,
        analysis_pb2.CreateBehaviorAnalysisRequest(
            attempt_id=str(uuid.uuid4()),
            integrity_score=0.5,
            llm_summary="fine\x00",
            recommendations=["a", "b", "c", "d\x00"],
        ),
        metadata=service.metadata,
    )
    assert set(bad_request_fields(analysis)) == {"llm_summary", "recommendations[3]"}


def test_nul_in_a_recorded_event_names_its_path(channel, student):
    detector = resources_pb2.Detector(name="cam\x00", version="1")
    error = rpc_error(
        monitoring_pb2_grpc.MonitoringServiceStub(channel).RecordEvent,
        monitoring_pb2.RecordEventRequest(event=event(str(uuid.uuid4()), detector=detector)),
        metadata=student.metadata,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error)) == {"event.detector.name"}


def _well_known(field: FieldDescriptor) -> bool:
    return field.message_type.full_name.startswith("google.protobuf.")  # a Timestamp


def _string_paths(descriptor, prefix: str = "") -> list[str]:
    paths = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            paths.append(prefix + field.name)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not _well_known(field):
            paths.extend(_string_paths(field.message_type, f"{prefix}{field.name}."))
    return paths


# A valid value with a NUL in it, for every string an event has. A string field added to
# MonitoringEvent fails the test until it is listed here, and so until it is checked.
NUL_VALUES = {
    "event_id": f"{uuid.uuid4()}\x00",
    "attempt_id": f"{uuid.uuid4()}\x00",
    "event_type": "tab\x00switch",
    "data_json": '{"note": "a\x00b"}',
    "description": "two faces\x00",
    "detector.name": "cam\x00",
    "detector.version": "1.0\x00",
}


def _event_with(path: str, value: str) -> resources_pb2.MonitoringEvent:
    message = event(str(uuid.uuid4()), detector=resources_pb2.Detector(name="cam", version="1"))
    holder, name = message, path
    if "." in path:
        parent, name = path.split(".")
        holder = getattr(message, parent)
    setattr(holder, name, value)
    return message


def test_every_string_of_a_streamed_event_is_covered():
    assert set(_string_paths(resources_pb2.MonitoringEvent.DESCRIPTOR)) == set(NUL_VALUES)


@pytest.mark.parametrize("path", sorted(NUL_VALUES))
def test_nul_in_a_streamed_event_rejects_only_that_event(channel, student, path):
    response = stream(channel, student.metadata, [[_event_with(path, NUL_VALUES[path])]])
    assert response.rejected_count == 1
    [rejection] = response.rejections
    assert rejection.field == path
    assert not rejection.retryable


# 5. Health/List ------------------------------------------------------------------------


def test_health_list_answers_every_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    statuses = health.List(health_pb2.HealthListRequest(), timeout=10).statuses
    assert {"", "veritas.v1.AuthService", "veritas.v1.MonitoringService"} <= set(statuses)
    assert statuses[""].status == health_pb2.HealthCheckResponse.SERVING


# 6. Error details stay small ------------------------------------------------------------


def test_thousands_of_bad_fields_get_a_short_list_and_a_count(channel, make_account):
    teacher = make_account(Role.TEACHER)
    rules = [resources_pb2.BehaviorRule(event_type="Tab Switch", weight=11)] * 10_000
    error = rpc_error(
        teacher_pb2_grpc.TeacherServiceStub(channel).CreateExam,
        teacher_pb2.CreateExamRequest(exam=exam_message(behavior_rules=rules)),
        metadata=teacher.metadata,
        timeout=30,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _request_id(error)
    [bad_request] = rpc_status.from_call(error).details
    violations = error_details_pb2.BadRequest()
    bad_request.Unpack(violations)
    assert len(violations.field_violations) == 21
    # Too many rules, then each rule's bad fields: over 20,000 violations in all.
    first = [v.field for v in violations.field_violations[:3]]
    assert first == [
        "exam.behavior_rules",
        "exam.behavior_rules[0].event_type",
        "exam.behavior_rules[0].weight",
    ]
    rest = re.fullmatch(
        r"(\d+) more violations, not listed", violations.field_violations[-1].description
    )
    assert rest and int(rest[1]) > 20_000 - 20
    assert _trailers_size(error) < CLIENT_METADATA_LIMIT // 2


def test_long_input_is_never_echoed_whole(channel, make_account):
    teacher = make_account(Role.TEACHER)
    stub = teacher_pb2_grpc.TeacherServiceStub(channel)
    exam = stub.CreateExam(
        teacher_pb2.CreateExamRequest(exam=exam_message()), metadata=teacher.metadata
    ).exam
    long_path = "p" * 20_000
    error = rpc_error(
        stub.UpdateExam,
        teacher_pb2.UpdateExamRequest(
            exam=resources_pb2.Exam(id=exam.id), update_mask=FieldMask(paths=[long_path])
        ),
        metadata=teacher.metadata,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, description)] = bad_request_fields(error).items()
    assert field == "update_mask"
    assert description.startswith("unknown paths: ppp") and description.endswith("…")
    assert len(description.encode()) <= 100
    assert _trailers_size(error) < 1024


# 8. Messages over the size limit ------------------------------------------------------


def test_stream_events_refused_for_size_still_carries_a_request_id(channel, student, settings):
    huge = event(str(uuid.uuid4()), description="x" * (settings.max_message_bytes + 1))
    requests = iter([monitoring_pb2.StreamEventsRequest(events=[huge])])
    future = monitoring_pb2_grpc.MonitoringServiceStub(channel).StreamEvents.future(
        requests, metadata=student.metadata, timeout=10
    )
    with pytest.raises(grpc.RpcError) as error:
        future.result()
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    headers = dict(future.initial_metadata() or ())
    assert len(headers.get("x-request-id", "")) == 32


def test_an_escaped_nul_in_data_json_is_stored_as_sent(channel, auth_stub, make_account):
    """The json column keeps the payload's text, in which \\u0000 is six characters, not a
    NUL: PostgreSQL stores it (jsonb would not), and it comes back as sent."""
    world = scene(channel, auth_stub, make_account)
    sent = event(world.attempt_id, data_json='{"note": "a\\u0000b"}')
    assert stream(channel, world.student.metadata, [[sent]]).accepted_count == 1
    (stored,) = (
        monitoring_pb2_grpc.MonitoringServiceStub(channel)
        .ListEvents(
            monitoring_pb2.ListEventsRequest(attempt_id=world.attempt_id),
            metadata=world.teacher.metadata,
        )
        .events
    )
    assert stored.data_json == sent.data_json
