"""Monitoring across server processes: live alerts through LISTEN/NOTIFY, and a thousand
agent streams at once on a bounded number of threads."""

import asyncio
import time
import uuid

import grpc
import pytest
from sqlalchemy import text
from veritas.v1 import monitoring_pb2, monitoring_pb2_grpc

from tests.e2e.monitoring_helpers import critical, event, scene, stream
from tests.support import ServerProcess
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.domain.identity import Role


@pytest.fixture(scope="module")
def watcher_process(database_url):
    process = ServerProcess(database_url, VERITAS_WATCH_HEARTBEAT_SECONDS="0.5")
    yield process
    process.stop()


def test_an_alert_ingested_by_one_process_reaches_a_watcher_on_another(
    channel, auth_stub, make_account, watcher_process
):
    world = scene(channel, auth_stub, make_account)
    with grpc.insecure_channel(watcher_process.address) as other:
        watch = monitoring_pb2_grpc.MonitoringServiceStub(other).WatchExamAlerts(
            monitoring_pb2.WatchExamAlertsRequest(exam_id=world.exam_id),
            metadata=world.teacher.metadata,
            timeout=30,
        )
        assert next(watch).HasField("heartbeat")  # the watch is live
        # The request id comes with the stream's headers, not only at its end.
        assert dict(watch.initial_metadata())["x-request-id"]
        alert = critical(world.attempt_id)
        sent_at = time.monotonic()
        response = stream(channel, world.student.metadata, [[event(world.attempt_id), alert]])
        assert response.accepted_count == 2
        received = next(m for m in watch if m.HasField("alert"))
        latency = time.monotonic() - sent_at
        # A resent event is a duplicate and raises no second alert: the next messages
        # are heartbeats (every 0.5 s here).
        resent = stream(channel, world.student.metadata, [[alert]])
        assert resent.duplicate_count == 1
        assert [m.WhichOneof("payload") for m in (next(watch), next(watch))] == [
            "heartbeat",
            "heartbeat",
        ]
        watch.cancel()
    assert received.alert.event_id == alert.event_id
    assert received.alert.student_id == world.student.user_id
    assert received.alert.event_type == "multiple_faces" and received.alert.is_anomaly
    assert latency < 1.0, latency


def test_watching_needs_access_to_the_exam(channel, auth_stub, make_account, watcher_process):
    world = scene(channel, auth_stub, make_account)
    outsider = make_account(Role.TEACHER)
    with grpc.insecure_channel(watcher_process.address) as other:
        watch = monitoring_pb2_grpc.MonitoringServiceStub(other).WatchExamAlerts(
            monitoring_pb2.WatchExamAlertsRequest(exam_id=world.exam_id),
            metadata=outsider.metadata,
            timeout=10,
        )
        with pytest.raises(grpc.RpcError) as error:
            next(watch)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def _thousand_attempts(services, count):
    """count students with an attempt in progress at one exam, written in bulk."""
    with make_session_factory(services.engine)() as session:
        teacher = session.execute(
            text(
                "INSERT INTO users (email, password_hash, full_name, role) "
                "VALUES (:e, 'x', 'Bulk Teacher', 'teacher') RETURNING id"
            ),
            {"e": f"bulk-{uuid.uuid4().hex[:8]}@example.edu"},
        ).scalar_one()
        exam = session.execute(
            text(
                "INSERT INTO exams (title, max_score, pass_score, duration_minutes, "
                "status, created_by) VALUES ('Bulk', 10, 5, 120, 'PUBLISHED', :t) RETURNING id"
            ),
            {"t": teacher},
        ).scalar_one()
        session.execute(text("INSERT INTO exam_stats (exam_id) VALUES (:x)"), {"x": exam})
        tag = uuid.uuid4().hex[:8]
        attempts = (
            session.execute(
                text(
                    "WITH students AS ("
                    " INSERT INTO users (email, password_hash, full_name, role)"
                    " SELECT 'bulk-' || :tag || '-' || n || '@example.edu', 'x', 'S' || n,"
                    " 'student'"
                    " FROM generate_series(1, :count) AS n RETURNING id)"
                    " INSERT INTO exam_attempts (exam_id, student_id, attempt_number, deadline_at)"
                    " SELECT :x, id, 1, now() + interval '2 hours' FROM students RETURNING id"
                ),
                {"tag": tag, "count": count, "x": exam},
            )
            .scalars()
            .all()
        )
        session.commit()
    return [str(a) for a in attempts]


async def _agent(channel, metadata, attempt_id, messages, pause):
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)

    async def requests():
        for n in range(messages):
            if n:
                await asyncio.sleep(pause)
            yield monitoring_pb2.StreamEventsRequest(
                events=[event(attempt_id), event(attempt_id, is_anomaly=(n == 0))]
            )

    started = time.monotonic()
    response = await stub.StreamEvents(requests(), metadata=metadata, timeout=120)
    return response, time.monotonic() - started


@pytest.mark.drill  # ~24 s: 1,000 streams at once
def test_a_thousand_concurrent_agent_streams(database_url, services, make_account):
    agent = make_account(Role.SERVICE)
    attempts = _thousand_attempts(services, 1000)
    process = ServerProcess(database_url)
    try:
        threads_before = process.thread_count()

        async def scenario():
            channels = [
                grpc.aio.insecure_channel(
                    process.address, options=[("grpc.use_local_subchannel_pool", 1)]
                )
                for _ in range(10)
            ]
            peak = 0

            async def sample():
                nonlocal peak
                while True:
                    peak = max(peak, process.thread_count())
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample())
            results = await asyncio.gather(
                *(
                    _agent(channels[i % 10], agent.metadata, attempt, 3, 1.0)
                    for i, attempt in enumerate(attempts)
                )
            )
            sampler.cancel()
            for c in channels:
                await c.close()
            return results, peak

        results, peak = asyncio.run(scenario())
    finally:
        process.stop()
    assert all(r.accepted_count == 6 and r.rejected_count == 0 for r, _ in results)
    with make_session_factory(services.engine)() as session:
        stored, counted, anomalies = session.execute(
            text(
                "SELECT (SELECT count(*) FROM monitoring_events WHERE attempt_id = ANY(:a)), "
                "sum(event_count), sum(anomaly_count) FROM exam_attempts WHERE id = ANY(:a)"
            ),
            {"a": [uuid.UUID(a) for a in attempts]},
        ).one()
    assert (stored, counted, anomalies) == (6000, 6000, 1000)
    # Streams live on the event loop: the worker pools stay bounded (16 + 2 + 1 + 1).
    assert peak <= threads_before + 20, (threads_before, peak)
