"""Daily partitions of monitoring_events: created ahead, dropped after retention."""

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.domain.errors import InvalidArgument
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services.monitoring import MonitoringService


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def scratch(fresh_database):
    """A database of its own: these tests drop partitions other tests write to."""
    url = fresh_database("partitions")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


def _days(session_factory) -> list[date]:
    with SqlAlchemyUnitOfWork(session_factory) as uow:
        return uow.partitions.existing_days()


def test_partitions_are_created_ahead_and_old_ones_dropped(scratch):
    today = datetime.now(UTC).date()
    clock = Clock(datetime.now(UTC) + timedelta(days=20))
    monitoring = MonitoringService(
        lambda: SqlAlchemyUnitOfWork(scratch), clock, timedelta(seconds=60)
    )
    created = monitoring.ensure_partitions(days_ahead=3, days_behind=1)
    assert len(created.changed) == 5 and not created.busy  # 19 to 23 days ahead: all new
    days = _days(scratch)
    assert today + timedelta(days=23) in days and today in days
    assert monitoring.ensure_partitions(days_ahead=3, days_behind=1).changed == []

    with scratch() as session:
        session.execute(
            text(
                "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, event_type, "
                "category, severity) VALUES (gen_random_uuid(), now(), gen_random_uuid(), "
                "'heartbeat', 'TECHNICAL', 'INFO')"
            )
        )
        session.commit()
    dropped = monitoring.purge_partitions(older_than_days=10).changed
    assert today in dropped and all(
        day < (clock.now - timedelta(days=10)).date() for day in dropped
    )
    with scratch() as session:
        assert session.scalar(text("SELECT count(*) FROM monitoring_events")) == 0
    cutoff = (clock.now - timedelta(days=10)).date()
    remaining = _days(scratch)
    assert all(day >= cutoff for day in remaining)
    assert min(remaining) == clock.now.date() - timedelta(days=1)


def test_retention_needs_at_least_a_day(scratch):
    monitoring = MonitoringService(
        lambda: SqlAlchemyUnitOfWork(scratch), lambda: datetime.now(UTC), timedelta(seconds=60)
    )
    with pytest.raises(InvalidArgument):
        monitoring.purge_partitions(older_than_days=0)
