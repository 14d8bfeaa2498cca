"""An id with a trailing newline is refused by the rules, not by the database (issue 10,
item 7): `$` in a pattern matches before a final newline, PostgreSQL's uuid does not."""

import uuid

import grpc
from veritas.v1 import monitoring_pb2, monitoring_pb2_grpc

from tests.e2e.exam_helpers import rpc_error
from tests.e2e.monitoring_helpers import event, scene, stream
from tests.support import bad_request_fields


def test_an_event_id_with_a_trailing_newline_is_an_invalid_argument(
    channel, auth_stub, make_account
):
    world = scene(channel, auth_stub, make_account)
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    near_miss = event(world.attempt_id, event_id=f"{uuid.uuid4()}\n")
    error = rpc_error(
        stub.RecordEvent,
        monitoring_pb2.RecordEventRequest(event=near_miss),
        metadata=world.student.metadata,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be a UUID" in bad_request_fields(error)["event.event_id"]

    response = stream(channel, world.student.metadata, [[near_miss, event(world.attempt_id)]])
    assert response.accepted_count == 1
    [rejection] = response.rejections
    assert (rejection.index, rejection.field, rejection.retryable) == (0, "event_id", False)
