"""Migration 0014's storage parameters: on every partition the migration found, on those
the partition upkeep creates later (partitions inherit none from monitoring_events), and
on audit_logs; taken back by the downgrade."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from tests.integration.test_event_partitions import Clock
from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.db.storage import AUDIT_LOG_STORAGE, EVENT_PARTITION_STORAGE
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services.monitoring import MonitoringService

PARTITION_OPTIONS = (
    "SELECT c.relname, c.reloptions FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'monitoring_events'::regclass ORDER BY 1"
)
AUDIT_OPTIONS = "SELECT reloptions FROM pg_class WHERE relname = 'audit_logs'"


def _options(parameters: dict[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in parameters.items()]


@pytest.fixture(scope="module")
def scratch_url(fresh_database):
    url = fresh_database("storage")
    migrate.upgrade(url)
    return url


def _read(url: str, statement: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(statement))]
    finally:
        engine.dispose()


def test_migrated_partitions_and_the_audit_log_carry_the_settings(scratch_url):
    partitions = _read(scratch_url, PARTITION_OPTIONS)
    assert len(partitions) >= 9  # the days migration 0003 made
    assert {name: options for name, options in partitions} == {
        name: _options(EVENT_PARTITION_STORAGE) for name, _ in partitions
    }
    assert _read(scratch_url, AUDIT_OPTIONS) == [(_options(AUDIT_LOG_STORAGE),)]


def test_partitions_the_upkeep_creates_carry_them_too(scratch_url):
    engine = make_engine(scratch_url, pool_size=2)
    factory = make_session_factory(engine)
    later = Clock(datetime.now(UTC) + timedelta(days=40))
    monitoring = MonitoringService(
        lambda: SqlAlchemyUnitOfWork(factory), later, timedelta(seconds=60)
    )
    try:
        assert monitoring.ensure_partitions(days_ahead=2, days_behind=0).changed
    finally:
        engine.dispose()
    partitions = dict(_read(scratch_url, PARTITION_OPTIONS))
    new = f"monitoring_events_p{later().date() + timedelta(days=2):%Y%m%d}"
    assert partitions[new] == _options(EVENT_PARTITION_STORAGE)


def test_the_downgrade_resets_them(fresh_database):
    url = fresh_database("storage_down")
    migrate.upgrade(url, "0014_exam_day_storage")
    migrate.downgrade(url, "0013_analysis_queue")
    assert {options for _, options in _read(url, PARTITION_OPTIONS)} == {None}
    assert _read(url, AUDIT_OPTIONS) == [(None,)]
