"""Each attempt's tallies by event type and severity (migration 0018): ingestion moves
them with the events it stores, exactly once per event whatever the resends and
concurrent streams; the monitoring view's summary and every events read agree with the
events themselves, also when the tallies do not add up (then they are not trusted)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from veritas.v1 import common_pb2, monitoring_pb2, monitoring_pb2_grpc, teacher_pb2

from tests.e2e.exam_helpers import stubs, timestamp
from tests.e2e.monitoring_helpers import event, scene, stream

SEVERITIES = (common_pb2.SEVERITY_INFO, common_pb2.SEVERITY_WARNING, common_pb2.SEVERITY_CRITICAL)
COUNTED = text(
    "SELECT event_type, severity, count(*), count(*) FILTER (WHERE is_anomaly), "
    "min(occurred_at), max(occurred_at) FROM monitoring_events WHERE attempt_id = :a "
    "GROUP BY 1, 2 ORDER BY 1, 2"
)
TALLIED = text(
    "SELECT event_type, severity, event_count, anomaly_count, first_occurred_at, "
    "last_occurred_at FROM attempt_event_tallies WHERE attempt_id = :a ORDER BY 1, 2"
)


def mixed_events(attempt_id: str, count: int, seed: int) -> list:
    """Events of four types and three severities, some anomalies, occur times spread
    over the last 20 hours (so over two daily partitions most of the day)."""
    now = datetime.now(UTC)
    return [
        event(
            attempt_id,
            event_type=("gaze_away", "tab_switch", "voice_detected", "eye_movement")[n % 4],
            severity=SEVERITIES[(n + seed) % 3],
            is_anomaly=n % 5 == 0,
            occur_time=timestamp(now - timedelta(minutes=1 + (n * 37 + seed) % 1200)),
        )
        for n in range(count)
    ]


def all_events(monitoring, attempt_id: str, metadata) -> list:
    found, token = [], ""
    while True:
        page = monitoring.ListEvents(
            monitoring_pb2.ListEventsRequest(attempt_id=attempt_id, page_size=37, page_token=token),
            metadata=metadata,
        )
        found.extend(page.events)
        token = page.next_page_token
        if not token:
            return found


def summary(channel, world) -> list[tuple[str, int, int, int]]:
    _, teacher_stub = stubs(channel)
    view = teacher_stub.GetAttemptMonitoring(
        teacher_pb2.GetAttemptMonitoringRequest(attempt_id=world.attempt_id),
        metadata=world.teacher.metadata,
    )
    return [(s.event_type, s.severity, s.event_count, s.anomaly_count) for s in view.event_summary]


def counted_summary(engine, attempt_id: str) -> list[tuple[str, int, int, int]]:
    """The summary as counting the events gives it, in the view's order."""
    with engine.connect() as connection:
        rows = connection.execute(COUNTED, {"a": attempt_id}).all()
    by_count = sorted(rows, key=lambda r: (-r[2], r[0], r[1]))
    return [(r[0], common_pb2.Severity.Value(f"SEVERITY_{r[1]}"), r[2], r[3]) for r in by_count]


def all_at_once(agents) -> None:
    """Run the callables on threads started together; wait for all."""
    threads = [threading.Thread(target=agent) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def tallied_and_counted(engine, attempt_id: str) -> tuple[list[tuple], list[tuple]]:
    """The attempt's tallies and what counting its events gives, in one order."""
    with engine.connect() as connection:
        tallied = connection.execute(TALLIED, {"a": attempt_id}).all()
        counted = connection.execute(COUNTED, {"a": attempt_id}).all()
    return [tuple(r) for r in tallied], [tuple(r) for r in counted]


def test_tallies_follow_every_stored_event_once(channel, auth_stub, make_account, services):
    engine = services.engine
    world = scene(channel, auth_stub, make_account)
    first = mixed_events(world.attempt_id, 300, seed=1)
    answer = stream(channel, world.student.metadata, [first[:150], first[150:]])
    assert answer.accepted_count == 300
    # Resent halves alongside new events, from four concurrent streams.
    answers = []

    def agent(n: int) -> None:
        fresh = mixed_events(world.attempt_id, 100, seed=n + 2)
        resent = first[n * 50 : n * 50 + 100]
        answers.append(stream(channel, world.student.metadata, [resent + fresh[:50], fresh[50:]]))

    all_at_once(lambda n=n: agent(n) for n in range(4))
    assert sum(a.accepted_count for a in answers) == 400
    assert sum(a.duplicate_count for a in answers) == 400

    tallied, counted = tallied_and_counted(engine, world.attempt_id)
    with engine.connect() as connection:
        total = connection.execute(
            text("SELECT event_count FROM exam_attempts WHERE id = :a"), {"a": world.attempt_id}
        ).scalar_one()
    assert tallied == counted
    assert total == sum(r[2] for r in tallied) == 700
    assert summary(channel, world) == counted_summary(engine, world.attempt_id)

    monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    listed = all_events(monitoring, world.attempt_id, world.teacher.metadata)
    assert len(listed) == 700 == len({e.event_id for e in listed})
    times = [(e.occur_time.ToDatetime(), e.event_id) for e in listed]
    assert times == sorted(times)


def test_tallies_that_do_not_add_up_are_not_trusted(channel, auth_stub, make_account, services):
    engine = services.engine
    world = scene(channel, auth_stub, make_account)
    answer = stream(channel, world.student.metadata, [mixed_events(world.attempt_id, 60, 0)])
    assert answer.accepted_count == 60
    # Events stored as a server from before migration 0018 stores them (counted in the
    # attempt, in no tally), a day before the others: outside the tallied span.
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, event_type, "
                "category, severity) SELECT :a, now() - interval '23 hours' - n * interval "
                "'1 second', (:ids)[n], 'copy_paste', 'INTEGRITY', 'WARNING' "
                "FROM generate_series(1, 5) n"
            ),
            {"a": world.attempt_id, "ids": [uuid.uuid4() for _ in range(5)]},
        )
        connection.execute(
            text("UPDATE exam_attempts SET event_count = event_count + 5 WHERE id = :a"),
            {"a": world.attempt_id},
        )
    monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    assert summary(channel, world) == counted_summary(engine, world.attempt_id)
    assert len(all_events(monitoring, world.attempt_id, world.teacher.metadata)) == 65


def test_a_lost_tally_is_not_trusted(channel, auth_stub, make_account, services):
    engine = services.engine
    world = scene(channel, auth_stub, make_account)
    answer = stream(channel, world.student.metadata, [mixed_events(world.attempt_id, 60, 0)])
    assert answer.accepted_count == 60
    with engine.begin() as connection:
        lost = connection.execute(
            text(
                "DELETE FROM attempt_event_tallies WHERE attempt_id = :a AND (event_type, "
                "severity) = (SELECT event_type, severity FROM attempt_event_tallies WHERE "
                "attempt_id = :a ORDER BY first_occurred_at LIMIT 1)"
            ),
            {"a": world.attempt_id},
        ).rowcount
    assert lost == 1
    monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    assert summary(channel, world) == counted_summary(engine, world.attempt_id)
    assert len(all_events(monitoring, world.attempt_id, world.teacher.metadata)) == 60


def test_the_same_new_events_from_two_streams_at_once_are_tallied_once(
    channel, auth_stub, make_account, services
):
    """Two agents (a retry racing its original) send the same new events together: the
    loser of each race finds them stored (the staging path) and tallies nothing."""
    engine = services.engine
    world = scene(channel, auth_stub, make_account)
    for round_ in range(3):
        shared = mixed_events(world.attempt_id, 200, seed=round_)
        messages = [shared[n : n + 50] for n in range(0, 200, 50)]
        answers: list = []

        def agent(sent=messages, into=answers) -> None:
            into.append(stream(channel, world.student.metadata, sent))

        all_at_once([agent, agent])
        assert sum(a.accepted_count for a in answers) == 200
        assert sum(a.duplicate_count for a in answers) == 200
    tallied, counted = tallied_and_counted(engine, world.attempt_id)
    assert tallied == counted
    assert sum(r[2] for r in tallied) == 600
