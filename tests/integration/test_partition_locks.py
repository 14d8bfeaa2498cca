"""Partition maintenance never stalls ingestion (issue 10, item 13): behind a long
reader, a DROP of an old partition gives up within its lock timeout and is retried
later, while inserts go on without waiting behind it."""

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.repositories.partitions import partition_name
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services.monitoring import MonitoringService

# "About a second" at most; the lock timeout is half of that.
INGEST_WAIT_LIMIT_SECONDS = 1.0
READER_HOLDS_SECONDS = 5
INSERT = text(
    "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, event_type, "
    "category, severity) VALUES (gen_random_uuid(), now() + interval '20 days', "
    "gen_random_uuid(), 'heartbeat', 'TECHNICAL', 'INFO')"
)
READERS = {
    # What each reader locks ACCESS SHARE until its transaction ends.
    "an old partition": lambda old: f"LOCK TABLE {old} IN ACCESS SHARE MODE",
    "the whole table": lambda old: "SELECT count(*) FROM monitoring_events",
    # Pruned when planned (a literal bound): the table and its newest partitions only.
    "recent events": lambda old: (
        "SELECT count(*) FROM monitoring_events "
        f"WHERE occurred_at >= '{(datetime.now(UTC) + timedelta(days=19)).isoformat()}'"
    ),
}


@pytest.fixture
def engine(fresh_database):
    """A database of its own: these tests drop partitions other tests write to."""
    url = fresh_database("partition_locks")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4)
    yield engine
    engine.dispose()


def _monitoring(engine, days_ahead: int) -> MonitoringService:
    """Monitoring as seen from days_ahead days in the future: today's partitions are old."""
    session_factory = make_session_factory(engine)
    now = datetime.now(UTC) + timedelta(days=days_ahead)
    return MonitoringService(
        lambda: SqlAlchemyUnitOfWork(session_factory), lambda: now, timedelta(seconds=60)
    )


def _seconds_to_insert(engine) -> float:
    """How long one ingest insert takes; it gives up (the test fails) after 5 s."""
    with engine.connect() as connection:
        connection.execute(text("SET lock_timeout = '5s'"))
        started = time.monotonic()
        try:
            connection.execute(INSERT)
            connection.commit()
        except OperationalError:
            pass  # waited 5 s for a lock: far over the limit
        return time.monotonic() - started


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_purge_behind_a_long_reader_does_not_hold_up_inserts(engine, reader):
    monitoring = _monitoring(engine, days_ahead=20)
    monitoring.ensure_partitions(days_ahead=3, days_behind=1)
    today = datetime.now(UTC).date()
    purged: list = []
    with engine.connect() as long_reader:
        long_reader.execute(text(READERS[reader](partition_name(today))))
        purge = threading.Thread(
            target=lambda: purged.append(monitoring.purge_partitions(older_than_days=10))
        )
        purge.start()
        time.sleep(0.2)  # the purge is now waiting for a lock the reader holds
        waited = _seconds_to_insert(engine)
        purge.join(timeout=READER_HOLDS_SECONDS)  # a reader longer than any lock timeout
        long_reader.rollback()
        purge.join(timeout=60)
    assert waited < INGEST_WAIT_LIMIT_SECONDS, f"an insert waited {waited:.1f} s"
    [upkeep] = purged
    assert today in upkeep.busy
    # Later, with the reader gone, the retry drops what was busy.
    assert today in monitoring.purge_partitions(older_than_days=10).changed
    assert today not in _days(engine)


def test_creating_partitions_behind_a_long_reader_gives_up_and_is_retried(engine):
    monitoring = _monitoring(engine, days_ahead=40)
    with engine.connect() as long_reader:
        long_reader.execute(text("SELECT count(*) FROM monitoring_events"))
        # CREATE ... PARTITION OF needs ACCESS EXCLUSIVE on the table the reader reads.
        first = monitoring.ensure_partitions(days_ahead=0, days_behind=0)
        long_reader.rollback()
    assert first.changed == [] and len(first.busy) == 1
    assert monitoring.ensure_partitions(days_ahead=0, days_behind=0).changed == first.busy


def _days(engine) -> list[date]:
    with SqlAlchemyUnitOfWork(make_session_factory(engine)) as uow:
        return uow.partitions.existing_days()
