"""services.auditing.audited_read on a real PostgreSQL: a read on the primary commits its
audit row in its own transaction (one checkout, one commit); a read on a replica or
from a snapshot commits it in a transaction of its own on the primary once the read's
has ended, because a snapshot older than the chain head's last move cannot lock it;
a read that raises writes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import OperationalError

from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.db.models import AuditLog
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services import auditing
from veritas_grpc.services.auditing import audited_read


@pytest.fixture(scope="module")
def primary(fresh_database):
    url = fresh_database("audited_reads")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=2)
    yield engine, make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def transactions(primary):
    """Every checkout, commit and rollback on the primary from here on."""
    engine, _ = primary
    seen: list[str] = []
    listeners = {
        (engine.pool, "checkout"): lambda *_: seen.append("checkout"),
        (engine, "commit"): lambda *_: seen.append("commit"),
        (engine, "rollback"): lambda *_: seen.append("rollback"),
    }
    for (target, name), listener in listeners.items():
        event.listen(target, name, listener)
    yield seen
    for (target, name), listener in listeners.items():
        event.remove(target, name, listener)


def _writes(factory):
    return lambda: SqlAlchemyUnitOfWork(factory)


def _actions(factory) -> list[str]:
    with factory() as session:
        return list(session.scalars(select(AuditLog.action).order_by(AuditLog.sequence)))


def _some_read(uow) -> None:
    uow.session.execute(text("SELECT count(*) FROM exams")).scalar_one()


ACTOR = Principal(
    uuid.uuid4(), Role.TEACHER, "jti", uuid.uuid4(), datetime.now(UTC) + timedelta(hours=1)
)


def test_a_read_on_the_primary_commits_its_audit_row_in_its_own_transaction(primary, transactions):
    _, factory = primary
    before = _actions(factory)
    transactions.clear()
    with audited_read(_writes(factory), _writes(factory), ACTOR) as read:
        _some_read(read.uow)
        read.audit("exam.read_analytics", "exam", "e-1")
    assert transactions == ["checkout", "commit"]
    assert _actions(factory) == [*before, "exam.read_analytics"]


def test_a_read_asking_for_no_row_writes_nothing(primary, transactions):
    _, factory = primary
    before = _actions(factory)
    transactions.clear()
    with audited_read(_writes(factory), _writes(factory), ACTOR) as read:
        _some_read(read.uow)
    assert transactions == ["checkout", "rollback"]
    assert _actions(factory) == before


def test_a_read_that_raises_is_not_audited(primary):
    _, factory = primary
    before = _actions(factory)
    with (
        pytest.raises(LookupError),
        audited_read(_writes(factory), _writes(factory), ACTOR) as read,
    ):
        read.audit("exam.read_flagged", "exam", "e-2")
        raise LookupError("not found")
    assert _actions(factory) == before


def test_a_replica_read_is_audited_on_the_primary(primary):
    """The replica stands in as a read-only session factory: writing there would fail."""
    engine, factory = primary
    replica = make_session_factory(engine.execution_options(postgresql_readonly=True))
    before = _actions(factory)
    reads = lambda: SqlAlchemyUnitOfWork(replica, on_primary=False)  # noqa: E731
    with audited_read(reads, _writes(factory), ACTOR) as read:
        _some_read(read.uow)
        read.audit("attempt.search", details={"filters": {"flagged": True}})
    assert _actions(factory) == [*before, "attempt.search"]


def test_a_snapshot_read_is_audited_after_it_though_the_head_moved_meanwhile(primary):
    _, factory = primary
    before = _actions(factory)
    with audited_read(_writes(factory), _writes(factory), ACTOR) as read:
        read.uow.snapshot()
        _some_read(read.uow)  # the snapshot is taken
        with _writes(factory)() as other:  # another call's audit row moves the head
            auditing.record(other, "exam.watch", "success", actor=ACTOR)
            other.commit()
        read.audit("attempt.read_events", "attempt", "a-1")
    assert _actions(factory) == [*before, "exam.watch", "attempt.read_events"]


def test_why_a_snapshot_does_not_seal_in_its_own_transaction(primary):
    """The head, moved since the snapshot began, cannot be locked from it."""
    _, factory = primary
    with _writes(factory)() as reading:
        reading.snapshot()
        _some_read(reading)
        with _writes(factory)() as other:
            auditing.record(other, "exam.watch", "success", actor=ACTOR)
            other.commit()
        auditing.record(reading, "attempt.read_events", "success", actor=ACTOR)
        with pytest.raises(OperationalError, match="could not serialize"):
            reading.commit()
