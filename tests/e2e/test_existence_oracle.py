"""An attempt on an exam the caller may not see answers exactly as an attempt that does not
exist: the same code, message and details (issue 10, item 9). Any difference would let a
stranger tell which attempt ids are real."""

from __future__ import annotations

import uuid

import pytest
from veritas.v1 import (
    analysis_pb2,
    analysis_pb2_grpc,
    common_pb2,
    monitoring_pb2,
    monitoring_pb2_grpc,
    teacher_pb2,
    teacher_pb2_grpc,
)

from tests.e2e.exam_helpers import rpc_error
from tests.e2e.monitoring_helpers import scene
from veritas_grpc.domain.identity import Role

TEACHER = teacher_pb2_grpc.TeacherServiceStub
MONITORING = monitoring_pb2_grpc.MonitoringServiceStub
ANALYSIS = analysis_pb2_grpc.AnalysisServiceStub

# Every RPC that takes an attempt id: its stub and a request for an attempt.
CALLS = {
    "GradeAttempt": (TEACHER, lambda a: teacher_pb2.GradeAttemptRequest(attempt_id=a, points=1)),
    "GetAttemptMonitoring": (
        TEACHER,
        lambda a: teacher_pb2.GetAttemptMonitoringRequest(attempt_id=a),
    ),
    "ReviewEvent": (
        TEACHER,
        lambda a: teacher_pb2.ReviewEventRequest(
            attempt_id=a, event_id=str(uuid.uuid4()), decision=common_pb2.REVIEW_DECISION_CONFIRMED
        ),
    ),
    "ReviewAttempt": (
        TEACHER,
        lambda a: teacher_pb2.ReviewAttemptRequest(
            attempt_id=a, outcome=common_pb2.REVIEW_OUTCOME_CLEARED
        ),
    ),
    "ListEvents": (MONITORING, lambda a: monitoring_pb2.ListEventsRequest(attempt_id=a)),
    "AnalyzeAttempt": (ANALYSIS, lambda a: analysis_pb2.AnalyzeAttemptRequest(attempt_id=a)),
}


def _status(error):
    """What the caller learns, less the request id (which differs by design)."""
    trailers = {k: v for k, v in error.trailing_metadata() if k != "x-request-id"}
    return error.code(), error.details(), trailers


@pytest.mark.parametrize("method", sorted(CALLS))
def test_a_hidden_attempt_answers_like_a_missing_one(channel, auth_stub, make_account, method):
    hidden = scene(channel, auth_stub, make_account).attempt_id
    stranger = make_account(Role.TEACHER)
    stub_class, request_for = CALLS[method]
    call = getattr(stub_class(channel), method)

    seen_hidden = _status(rpc_error(call, request_for(hidden), metadata=stranger.metadata))
    seen_missing = _status(
        rpc_error(call, request_for(str(uuid.uuid4())), metadata=stranger.metadata)
    )

    assert seen_hidden[0].name == "NOT_FOUND"
    assert seen_hidden == seen_missing
