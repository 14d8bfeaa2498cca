"""Ingestion over real channels: exact partial success, duplicates, resends, counters."""

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text
from veritas.v1 import monitoring_pb2, monitoring_pb2_grpc, resources_pb2, teacher_pb2

from tests.e2e.conftest import register_and_login
from tests.e2e.exam_helpers import rpc_error, stubs, submit, timestamp
from tests.e2e.monitoring_helpers import critical, event, scene, stream
from tests.support import bad_request_fields
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.domain.identity import Role


@pytest.fixture
def world(channel, auth_stub, make_account):
    return scene(channel, auth_stub, make_account)


def _stored(services, attempt_id):
    with make_session_factory(services.engine)() as session:
        return session.execute(
            text(
                "SELECT (SELECT count(*) FROM monitoring_events WHERE attempt_id = :a), "
                "(SELECT count(*) FROM monitoring_events WHERE attempt_id = :a AND is_anomaly), "
                "(SELECT count(*) FROM monitoring_events WHERE attempt_id = :a "
                "AND severity = 'CRITICAL'), event_count, anomaly_count, critical_count "
                "FROM exam_attempts WHERE id = :a"
            ),
            {"a": attempt_id},
        ).one()


def test_a_stream_mixing_valid_duplicate_and_invalid_events(channel, world, services):
    a = world.attempt_id
    first = [event(a), critical(a), event(a, event_type="tab_switch", is_anomaly=True)]
    again = event(a, event_id=first[0].event_id, occur_time=first[0].occur_time)
    bad = [
        event(a, event_id="not-a-uuid"),
        event(a, event_type="Tab Switch"),
        event(a, data_json="[1, 2]"),
        event(a, data_json="{" + '"x":' * 3),
    ]
    no_time = event(a)
    no_time.ClearField("occur_time")
    response = stream(channel, world.student.metadata, [first, [again, *bad], [no_time, event(a)]])
    assert (response.accepted_count, response.duplicate_count, response.rejected_count) == (
        4,
        1,
        5,
    )
    assert [r.index for r in response.rejections] == [4, 5, 6, 7, 8]
    fields = [r.field for r in response.rejections]
    assert fields == ["event_id", "event_type", "data_json", "data_json", "occur_time"]
    assert response.rejections[2].reason == "must be a JSON object"
    assert response.rejections[4].reason == "is required"
    assert not any(r.retryable for r in response.rejections)
    assert tuple(_stored(services, a)) == (4, 2, 1, 4, 2, 1)


def test_unknown_and_foreign_attempts_are_rejected_alike(channel, world, auth_stub, services):
    other = register_and_login(auth_stub)
    response = stream(
        channel,
        other.metadata,
        [[event(world.attempt_id), event(str(uuid.uuid4()))]],
    )
    assert response.rejected_count == 2 and response.accepted_count == 0
    assert {(r.field, r.reason) for r in response.rejections} == {("attempt_id", "unknown attempt")}
    assert _stored(services, world.attempt_id)[0] == 0


def test_teachers_and_admins_may_not_send(channel, world, make_account):
    for role in (Role.TEACHER, Role.ADMIN):
        caller = make_account(role)
        error = rpc_error(stream, channel, caller.metadata, [[event(world.attempt_id)]])
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_service_role_writes_to_any_attempt(channel, world, make_account, services):
    agent = make_account(Role.SERVICE)
    response = stream(channel, agent.metadata, [[event(world.attempt_id) for _ in range(3)]])
    assert response.accepted_count == 3
    assert _stored(services, world.attempt_id)[3] == 3


def test_events_after_submission_only_within_the_grace(channel, world, services):
    student_stub, _ = stubs(channel)
    submit(student_stub, world.student, world.attempt_id)
    late = stream(channel, world.student.metadata, [[event(world.attempt_id)]])
    assert late.accepted_count == 1  # a late flush, within the 60 s grace
    with make_session_factory(services.engine)() as session:
        session.execute(
            text("UPDATE exam_attempts SET ended_at = now() - interval '10 minutes' WHERE id = :a"),
            {"a": world.attempt_id},
        )
        session.commit()
    # A new stream reads the attempt afresh.
    too_late = stream(channel, world.student.metadata, [[event(world.attempt_id)]])
    assert too_late.rejected_count == 1
    late = too_late.rejections[0]
    assert (late.field, late.reason) == ("attempt_id", "the attempt is no longer in progress")


def test_a_cancelled_stream_keeps_what_was_committed_and_a_resend_stores_nothing_twice(
    channel, world, services
):
    a = world.attempt_id
    messages = [[event(a) for _ in range(50)] for _ in range(20)]
    sent = threading.Event()

    def requests():
        for index, batch in enumerate(messages):
            if index == 10:
                sent.set()
                time.sleep(2)  # the client dies here
            yield monitoring_pb2.StreamEventsRequest(events=batch)

    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    call = stub.StreamEvents.future(requests(), metadata=world.student.metadata)
    sent.wait(10)
    time.sleep(0.5)
    call.cancel()
    kept = _stored(services, a)[0]
    assert 0 < kept <= 500
    response = stream(channel, world.student.metadata, messages)
    assert response.accepted_count + response.duplicate_count == 1000
    assert response.duplicate_count == kept
    assert tuple(_stored(services, a))[:1] == (1000,)
    assert _stored(services, a)[3] == 1000


def test_counters_equal_the_stored_rows_after_16_concurrent_streams(
    channel, world, make_account, services
):
    agent = make_account(Role.SERVICE)
    a = world.attempt_id
    shared = [critical(a) for _ in range(20)]  # every stream sends these too

    def one_stream(n):
        own = [[event(a, is_anomaly=(i % 3 == 0)) for i in range(25)] for _ in range(4)]
        return stream(channel, agent.metadata, [*own, shared])

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(one_stream, range(16)))
    accepted = sum(r.accepted_count for r in responses)
    duplicates = sum(r.duplicate_count for r in responses)
    assert accepted == 16 * 100 + 20
    assert duplicates == 15 * 20
    rows, anomalies, critical_rows, counted, counted_anomalies, counted_critical = _stored(
        services, a
    )
    assert (rows, anomalies, critical_rows) == (counted, counted_anomalies, counted_critical)
    assert rows == 1620 and critical_rows == 20


def test_record_event_for_simple_agents(channel, world, services):
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    one = event(world.attempt_id)
    request = monitoring_pb2.RecordEventRequest(event=one)
    assert not stub.RecordEvent(request, metadata=world.student.metadata).duplicate
    assert stub.RecordEvent(request, metadata=world.student.metadata).duplicate
    bad = rpc_error(
        stub.RecordEvent,
        monitoring_pb2.RecordEventRequest(event=event(world.attempt_id, event_type="")),
        metadata=world.student.metadata,
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = rpc_error(
        stub.RecordEvent,
        monitoring_pb2.RecordEventRequest(event=event(str(uuid.uuid4()))),
        metadata=world.student.metadata,
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert _stored(services, world.attempt_id)[0] == 1


def test_events_too_old_or_from_the_future_are_rejected(channel, world):
    now = datetime.now(UTC)
    response = stream(
        channel,
        world.student.metadata,
        [
            [
                event(world.attempt_id, occur_time=timestamp(now - timedelta(days=2))),
                event(world.attempt_id, occur_time=timestamp(now + timedelta(hours=1))),
                event(world.attempt_id, data_json="{" + " " * 17000 + "}"),
            ]
        ],
    )
    assert [r.field for r in response.rejections] == ["occur_time", "occur_time", "data_json"]


def test_attempt_monitoring_and_event_listing(channel, world, make_account):
    a = world.attempt_id
    stream(
        channel,
        world.student.metadata,
        [[event(a) for _ in range(5)], [critical(a) for _ in range(2)]],
    )
    _, teacher_stub = stubs(channel)
    view = teacher_stub.GetAttemptMonitoring(
        teacher_pb2.GetAttemptMonitoringRequest(attempt_id=a, timeline_page_size=4),
        metadata=world.teacher.metadata,
    )
    assert (
        view.attempt.event_count,
        view.attempt.anomaly_count,
        view.attempt.critical_count,
    ) == (7, 2, 2)
    assert [(s.event_type, s.event_count, s.anomaly_count) for s in view.event_summary] == [
        ("eye_movement", 5, 0),
        ("multiple_faces", 2, 2),
    ]
    assert len(view.timeline) == 4 and view.timeline_next_page_token
    assert not view.HasField("behavior_analysis")
    monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    rest = monitoring.ListEvents(
        monitoring_pb2.ListEventsRequest(attempt_id=a, page_token=view.timeline_next_page_token),
        metadata=world.teacher.metadata,
    )
    assert len(rest.events) == 3 and not rest.next_page_token
    critical_only = monitoring.ListEvents(
        monitoring_pb2.ListEventsRequest(attempt_id=a, min_severity=3),
        metadata=world.teacher.metadata,
    )
    assert [e.event_type for e in critical_only.events] == ["multiple_faces"] * 2
    assert critical_only.events[0].description == "two faces in view"
    payload = json.loads(rest.events[-1].data_json)
    assert payload == {"gaze_x": 0.31, "duration_ms": 1200}
    assert isinstance(payload["duration_ms"], int)  # integers stay integers
    outsider = make_account(Role.TEACHER)
    hidden = rpc_error(
        monitoring.ListEvents,
        monitoring_pb2.ListEventsRequest(attempt_id=a),
        metadata=outsider.metadata,
    )
    assert hidden.code() == grpc.StatusCode.NOT_FOUND
    student_denied = rpc_error(
        monitoring.ListEvents,
        monitoring_pb2.ListEventsRequest(attempt_id=a),
        metadata=world.student.metadata,
    )
    assert student_denied.code() == grpc.StatusCode.PERMISSION_DENIED


def test_values_postgresql_would_refuse_are_rejected_alone(channel, world, services):
    a = world.attempt_id
    response = stream(
        channel,
        world.student.metadata,
        [
            [
                event(a),
                event(a, description="nul\x00here"),
                event(a, data_json='{"x": NaN}'),
                event(a),
            ]
        ],
    )
    assert (response.accepted_count, response.rejected_count) == (2, 2)
    assert not any(r.retryable for r in response.rejections)
    assert _stored(services, a)[0] == 2


def test_free_text_comes_back_exactly_as_sent(channel, world):
    """Free text goes to COPY escaped by hand: every character COPY treats specially
    must come back unchanged, and a literal \\N must not turn into NULL."""
    a = world.attempt_id
    tricky = "tab\there\nnew line\r\nback\\slash \\N \\t end"
    data = {"text": tricky, "path": "C:\\exam\\notes.txt", "é": "ünïcode 😀"}
    sent = event(
        a,
        description=tricky,
        data_json=" " + json.dumps(data) + "\n",
        detector=resources_pb2.Detector(
            name="agent\\vision", version="2.3\t1", confidence_score=0.5
        ),
    )
    assert stream(channel, world.student.metadata, [[sent]]).accepted_count == 1
    monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    (stored,) = monitoring.ListEvents(
        monitoring_pb2.ListEventsRequest(attempt_id=a), metadata=world.teacher.metadata
    ).events
    assert stored.description == tricky
    assert (stored.detector.name, stored.detector.version) == ("agent\\vision", "2.3\t1")
    assert stored.data_json == sent.data_json  # kept exactly as sent


def test_a_value_the_database_refuses_costs_only_its_own_event(
    channel, world, services, monkeypatch
):
    """Should the checks ever miss a value PostgreSQL refuses, only that event is
    refused (not retryable: resending cannot help); the rest of its message is stored."""
    monkeypatch.setattr("veritas_grpc.domain.events.payload_problem", lambda data_json: None)
    a = world.attempt_id
    events = [event(a) for _ in range(6)]
    events[4] = event(a, data_json='{"x": NaN}')
    response = stream(channel, world.student.metadata, [events])
    assert (response.accepted_count, response.rejected_count) == (5, 1)
    (rejection,) = response.rejections
    assert rejection.index == 4 and not rejection.retryable
    assert rejection.field == "" and rejection.reason.startswith("refused by the database")
    assert _stored(services, a)[0] == 5 and _stored(services, a)[3] == 5


def test_record_event_reports_a_refused_value_as_invalid(channel, world, services, monkeypatch):
    monkeypatch.setattr("veritas_grpc.domain.events.payload_problem", lambda data_json: None)
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    refused = rpc_error(
        stub.RecordEvent,
        monitoring_pb2.RecordEventRequest(event=event(world.attempt_id, data_json='{"x": NaN}')),
        metadata=world.student.metadata,
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(bad_request_fields(refused)) == ["event"]
    assert _stored(services, world.attempt_id)[0] == 0
