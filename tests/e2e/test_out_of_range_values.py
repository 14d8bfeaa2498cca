"""Values a client can send that the server cannot represent (issue 10, item 2) or does
not know (enum values out of range): INVALID_ARGUMENT on that field, never INTERNAL,
and for StreamEvents a rejection of that event alone."""

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from veritas.v1 import monitoring_pb2, monitoring_pb2_grpc, resources_pb2, teacher_pb2

from tests.e2e.exam_helpers import exam_message, rpc_error, stubs
from tests.e2e.monitoring_helpers import event, scene, stream
from tests.support import bad_request_fields

INVALID = grpc.StatusCode.INVALID_ARGUMENT
# After 9999-12-31, before 0001-01-01, and nanos out of range.
UNREPRESENTABLE = [
    Timestamp(seconds=253_402_300_800),
    Timestamp(seconds=-62_135_596_801),
    Timestamp(seconds=1_700_000_000, nanos=-1),
    Timestamp(seconds=1_700_000_000, nanos=1_000_000_000),
    Timestamp(seconds=2**62),
]


@pytest.fixture
def world(channel, auth_stub, make_account):
    return scene(channel, auth_stub, make_account)


@pytest.mark.parametrize("stamp", UNREPRESENTABLE)
def test_exam_times_out_of_range_are_field_violations(channel, world, stamp):
    _, teacher_stub = stubs(channel)
    error = rpc_error(
        teacher_stub.CreateExam,
        teacher_pb2.CreateExamRequest(exam=exam_message(open_time=stamp)),
        metadata=world.teacher.metadata,
    )
    assert error.code() == INVALID
    assert set(bad_request_fields(error)) == {"exam.open_time"}


@pytest.mark.parametrize("stamp", UNREPRESENTABLE)
def test_list_events_bounds_out_of_range_are_field_violations(channel, world, stamp):
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    error = rpc_error(
        stub.ListEvents,
        monitoring_pb2.ListEventsRequest(attempt_id=world.attempt_id, end_time=stamp),
        metadata=world.teacher.metadata,
    )
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"end_time"}


def test_an_unrepresentable_occur_time_rejects_that_event_alone(channel, world):
    bad = [event(world.attempt_id, occur_time=stamp) for stamp in UNREPRESENTABLE]
    good = event(world.attempt_id)
    response = stream(channel, world.student.metadata, [[*bad, good]])
    assert (response.accepted_count, response.rejected_count) == (1, len(bad))
    assert {r.field for r in response.rejections} == {"occur_time"}
    assert not any(r.retryable for r in response.rejections)


def test_record_event_names_the_field_from_its_request(channel, world):
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    error = rpc_error(
        stub.RecordEvent,
        monitoring_pb2.RecordEventRequest(
            event=event(world.attempt_id, occur_time=UNREPRESENTABLE[0])
        ),
        metadata=world.student.metadata,
    )
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"event.occur_time"}


def test_unknown_enum_values_are_refused_not_ignored(channel, world):
    _, teacher_stub = stubs(channel)
    rule = resources_pb2.BehaviorRule(event_type="tab_switch", default_severity=99)
    error = rpc_error(
        teacher_stub.CreateExam,
        teacher_pb2.CreateExamRequest(exam=exam_message(behavior_rules=[rule])),
        metadata=world.teacher.metadata,
    )
    assert set(bad_request_fields(error)) == {"exam.behavior_rules[0].default_severity"}
    monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    error = rpc_error(
        monitoring.ListEvents,
        monitoring_pb2.ListEventsRequest(attempt_id=world.attempt_id, min_severity=99),
        metadata=world.teacher.metadata,
    )
    assert set(bad_request_fields(error)) == {"min_severity"}
    response = stream(
        channel,
        world.student.metadata,
        [[event(world.attempt_id, severity=99), event(world.attempt_id, category=7)]],
    )
    assert [r.field for r in response.rejections] == ["severity", "category"]
