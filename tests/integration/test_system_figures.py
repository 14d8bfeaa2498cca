"""GetSystemStats's figures on a database of their own: the snapshot and when a read
computes anew, and the kept per-day event counts (closed days counted once, recounted
in turn)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import text

from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.repositories.partitions import partition_name
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services.oversight import Oversight

REFRESH = timedelta(seconds=60)
MAX_AGE = timedelta(days=1)
# Midday, so that shifting the clock by minutes or a few hours keeps the same days.
NOW = datetime.combine(datetime.now(UTC).date(), time(12), UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def scratch(fresh_database):
    url = fresh_database("figures")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    with engine.begin() as connection:
        for back in range(-1, 31):
            day = NOW.date() - timedelta(days=back)
            connection.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF "
                    f"monitoring_events FOR VALUES FROM ('{day}') TO ('{day + timedelta(days=1)}')"
                )
            )
    yield engine, factory
    engine.dispose()


def _add_events(engine, day: date, count: int) -> None:
    at = datetime.combine(day, time(6), UTC)
    with engine.begin() as connection:
        for _ in range(count):
            connection.execute(
                text(
                    "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, "
                    "event_type, category, severity) VALUES (:a, :t, :e, 'noise', "
                    "'INTEGRITY', 'INFO')"
                ),
                {"a": uuid.uuid4(), "t": at, "e": uuid.uuid4()},
            )


def _oversight(factory, clock, refresh=REFRESH) -> Oversight:
    return Oversight(lambda: SqlAlchemyUnitOfWork(factory), clock, refresh, MAX_AGE)


def _admin() -> Principal:
    return Principal(uuid.uuid4(), Role.ADMIN, "jti", uuid.uuid4(), NOW + timedelta(hours=1))


def _on(figures, day: date) -> int:
    return dict(figures.daily_event_counts)[day]


def test_reads_serve_the_snapshot_until_three_intervals_old(scratch):
    engine, factory = scratch
    clock = Clock(NOW)
    oversight = _oversight(factory, clock)
    first = oversight.system_stats(_admin()).figures  # no snapshot yet: computed, kept
    assert first.compute_time == NOW
    _add_events(engine, NOW.date(), 2)
    clock.now = NOW + 2 * REFRESH
    assert oversight.refresh() == 1  # the maintenance job: a new snapshot
    assert oversight.refresh() == 0  # another process made one just now: skipped
    clock.now = NOW + 4 * REFRESH
    served = oversight.system_stats(_admin()).figures
    assert served.compute_time == NOW + 2 * REFRESH and _on(served, NOW.date()) == 2
    _add_events(engine, NOW.date(), 1)
    clock.now = NOW + 6 * REFRESH  # the refresher stalled: the read computes anew
    fresh = oversight.system_stats(_admin()).figures
    assert fresh.compute_time == clock.now and _on(fresh, NOW.date()) == 3


def test_closed_days_are_kept_and_recounted_in_turn(scratch):
    engine, factory = scratch
    clock = Clock(NOW)
    oversight = _oversight(factory, clock)
    closed, open_day = NOW.date() - timedelta(days=5), NOW.date() - timedelta(days=1)
    _add_events(engine, closed, 3)
    _add_events(engine, open_day, 2)
    figures = oversight.compute(keep_days=True)
    assert [day for day, _ in figures.daily_event_counts][-1] == NOW.date()
    assert len(figures.daily_event_counts) == 30
    assert (_on(figures, closed), _on(figures, open_day)) == (3, 2)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT day, event_count FROM event_day_counts"))
        kept = {day: count for day, count in rows}
    # Yesterday ended less than the max age ago: still open, counted each time.
    assert kept[closed] == 3 and open_day not in kept and NOW.date() not in kept

    _add_events(engine, closed, 1)  # as if late, or restored
    _add_events(engine, open_day, 1)
    figures = oversight.compute(keep_days=True)
    assert (_on(figures, closed), _on(figures, open_day)) == (3, 3)  # kept; counted

    refreshes = 0  # one stale day recounted per refresh: 28 closed days in turn
    while _on(oversight.compute(keep_days=True), closed) != 4 and refreshes < 30:
        clock.now += timedelta(minutes=61)
        refreshes += 1
    assert _on(oversight.compute(keep_days=True), closed) == 4 and refreshes <= 29
    live = oversight.compute(keep_days=False)
    assert live.daily_event_counts == oversight.compute(keep_days=True).daily_event_counts


def _practice_attempt(engine, ended_at: datetime | None) -> uuid.UUID:
    """A practice attempt (its own student and exam): its events count in no figure."""
    ids = {"user": uuid.uuid4(), "exam": uuid.uuid4(), "attempt": uuid.uuid4(), "end": ended_at}
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, password_hash, full_name, role) "
                "VALUES (:user, :user || '@example.edu', 'x', 'Practising', 'student')"
            ),
            ids,
        )
        connection.execute(
            text(
                "INSERT INTO exams (id, title, max_score, pass_score, duration_minutes, "
                "created_by, is_practice) VALUES (:exam, 'Set-up check', 10, 5, 60, :user, true)"
            ),
            ids,
        )
        connection.execute(
            text(
                "INSERT INTO exam_attempts (id, exam_id, student_id, attempt_number, status, "
                "started_at, deadline_at, ended_at, is_practice) VALUES (:attempt, :exam, :user, "
                "1, CASE WHEN CAST(:end AS timestamptz) IS NULL THEN 'IN_PROGRESS' "
                "ELSE 'SUBMITTED' END, now() - interval '30 days', now(), :end, true)"
            ),
            ids,
        )
    return ids["attempt"]


def _add_practice_events(
    engine, attempt_id: uuid.UUID, day: date, count: int, at: time = time(6)
) -> None:
    first = datetime.combine(day, at, UTC)
    with engine.begin() as connection:
        for second in range(count):
            connection.execute(
                text(
                    "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, "
                    "event_type, category, severity) VALUES (:a, :t, :e, 'noise', "
                    "'INTEGRITY', 'CRITICAL')"
                ),
                {"a": attempt_id, "t": first + timedelta(seconds=second), "e": uuid.uuid4()},
            )


def test_practice_attempts_events_count_in_no_figure(scratch):
    engine, factory = scratch
    oversight = _oversight(factory, Clock(NOW))
    closed, today = NOW.date() - timedelta(days=5), NOW.date()
    ended = _practice_attempt(engine, datetime.combine(closed, time(7), UTC))
    running = _practice_attempt(engine, None)
    _add_events(engine, closed, 3)
    _add_practice_events(engine, ended, closed, 4)
    _add_events(engine, today, 2)
    _add_practice_events(engine, running, today, 5)
    # Ended before the day began, an event of its late grace and skew in the day.
    late = _practice_attempt(engine, datetime.combine(closed, time(), UTC) - timedelta(minutes=30))
    _add_practice_events(engine, late, closed, 1, at=time(0, 10))
    for keep_days in (True, False, True):  # counted, then kept
        figures = oversight.compute(keep_days=keep_days)
        assert (_on(figures, closed), _on(figures, today)) == (3, 2)
        assert figures.attempts == ()
    # The events were received just now (the wall clock's, whatever the hour).
    received = _oversight(factory, Clock(datetime.now(UTC))).compute(keep_days=False)
    assert (received.last_hour_event_count, received.last_day_event_count) == (2, 2)
    with SqlAlchemyUnitOfWork(factory) as uow:
        assert uow.events.critical_since(datetime.combine(closed, time(), UTC)) == 0
        assert uow.oversight.events_on(closed) == 3
