"""The audit trail's hash chain on a real PostgreSQL: concurrent writers never fork it,
and a superuser's edits through SQL (the append-only trigger disabled) are each found."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.support import TEST_SECRET
from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.domain.audit import AuditEntry
from veritas_grpc.domain.audit_chain import ERASURE_ACTION, ChainKeys, erasure_details
from veritas_grpc.domain.errors import FailedPrecondition
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services import auditing
from veritas_grpc.services.audit_trail import AuditTrail

KEYS = ChainKeys.from_secrets(TEST_SECRET)  # what tests/conftest.py seals with


@pytest.fixture(scope="module")
def migrated_template(fresh_database):
    url = fresh_database("audit_template")
    migrate.upgrade(url)
    return make_url(url).database


@pytest.fixture
def chain_db(postgres_server, migrated_template):
    """A database of its own per test, copied from a migrated one (faster than migrating)."""
    name = f"veritas_audit_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"'))
    engine = create_engine(postgres_server.set(database=name))
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def _uow_factory(engine):
    session_factory = make_session_factory(engine)
    return lambda: SqlAlchemyUnitOfWork(session_factory)


def _write(engine, commits: int, rows_per_commit: int = 1, tag: str = "t") -> None:
    uow_factory = _uow_factory(engine)
    for i in range(commits):
        with uow_factory() as uow:
            for j in range(rows_per_commit):
                auditing.record(uow, "test.write", "success", details={"tag": tag, "i": i, "j": j})
            uow.commit()


def _verify(engine, keys: ChainKeys = KEYS):
    return AuditTrail(_uow_factory(engine), keys).verify(None)


def _superuser(engine, *statements: str) -> None:
    """What someone with the database's owner rights can do behind the server's back."""
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only"))
        for statement in statements:
            connection.execute(text(statement))
        connection.execute(text("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only"))


def test_concurrent_writers_extend_one_unbroken_chain(chain_db):
    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(_write, chain_db, 25, 1 + n % 3, f"w{n}") for n in range(8)]:
            future.result()
    expected = sum(25 * (1 + n % 3) for n in range(8))

    report = _verify(chain_db)

    assert report.intact, report.verdict.broken
    assert report.verdict.checked_count == expected == report.head_sequence
    with chain_db.connect() as connection:
        sequences = connection.execute(
            text("SELECT sequence FROM audit_logs WHERE action = 'test.write' ORDER BY sequence")
        ).scalars()
        assert list(sequences) == list(range(1, expected + 1))


def test_a_row_committed_while_the_chain_is_walked_does_not_fail_the_verification(chain_db):
    """The walk reads a snapshot; its own audit row is written after it, so a row
    another transaction seals meanwhile cannot make the verification fail to commit."""
    _write(chain_db, 3)
    session_factory = make_session_factory(chain_db)

    class Interleaved(SqlAlchemyUnitOfWork):
        def __enter__(self):
            super().__enter__()
            walk = self.audit.chained_rows

            def chained_rows_after_a_concurrent_commit(*args, **kwargs):
                _write(chain_db, 1, tag="meanwhile")
                return walk(*args, **kwargs)

            self.audit.chained_rows = chained_rows_after_a_concurrent_commit
            return self

    report = AuditTrail(lambda: Interleaved(session_factory), KEYS).verify(None)
    assert report.intact and report.head_sequence == 3
    assert _verify(chain_db).intact


def test_a_rolled_back_transaction_leaves_no_link(chain_db):
    uow_factory = _uow_factory(chain_db)
    with uow_factory() as uow:
        auditing.record(uow, "test.write", "success")
        uow.rollback()
        auditing.record(uow, "test.kept", "success")
        uow.commit()
    with uow_factory() as uow:
        auditing.record(uow, "test.never_committed", "success")
    report = _verify(chain_db)
    assert report.intact and report.head_sequence == 1


def test_a_changed_row_is_found(chain_db):
    _write(chain_db, 10)
    _superuser(chain_db, "UPDATE audit_logs SET outcome = 'denied' WHERE sequence = 4")
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.sequence == 4
    assert broken.reason == "the row's content was changed"


def test_a_changed_row_with_its_digest_recomputed_is_found(chain_db):
    _write(chain_db, 10)
    _superuser(chain_db, "UPDATE audit_logs SET details = '{\"i\": 99}' WHERE sequence = 6")
    # A careful forger recomputes the public digest too; the link needs the key.
    with _uow_factory(chain_db)() as uow:
        changed = next(row for row in uow.audit.chained_rows(up_to=10) if row.row_id == 6)
        digest = changed.content.digest()
    _superuser(
        chain_db, f"UPDATE audit_logs SET content_digest = '\\x{digest.hex()}' WHERE sequence = 6"
    )
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.sequence == 6
    assert broken.reason == "the link does not follow from the one before"


def test_a_deleted_row_is_found(chain_db):
    _write(chain_db, 10)
    _superuser(chain_db, "DELETE FROM audit_logs WHERE sequence = 7")
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.sequence == 7
    assert broken.reason == "rows 7..7 are missing"


def test_the_newest_rows_deleted_are_found_against_the_head(chain_db):
    _write(chain_db, 10)
    _superuser(chain_db, "DELETE FROM audit_logs WHERE sequence > 8")
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.reason == "rows 9..10 are missing"


def test_inserted_rows_are_found(chain_db):
    _write(chain_db, 5)
    _superuser(
        chain_db,
        "INSERT INTO audit_logs (action, outcome, details) VALUES ('auth.login', 'success', '{}')",
    )
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.reason == "rows outside the chain were inserted: 1"


def test_a_row_appended_with_a_forged_link_is_found(chain_db):
    _write(chain_db, 5)
    forged = hashlib.sha256(b"forged").hexdigest()
    _superuser(
        chain_db,
        "INSERT INTO audit_logs (action, outcome, details, sequence, content_digest, "
        f"link_hash, key_id) VALUES ('auth.login', 'success', '{{}}', 6, '\\x{forged}', "
        f"'\\x{forged}', '{KEYS.current_id}')",
        "UPDATE audit_chain_head SET last_sequence = 6",
    )
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.sequence == 6


def test_a_row_appended_beyond_the_head_is_found(chain_db):
    _write(chain_db, 5)
    forged = hashlib.sha256(b"forged").hexdigest()
    _superuser(
        chain_db,
        "INSERT INTO audit_logs (action, outcome, details, sequence, content_digest, "
        f"link_hash, key_id) VALUES ('auth.login', 'success', '{{}}', 6, '\\x{forged}', "
        f"'\\x{forged}', '{KEYS.current_id}')",
    )
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.reason == "rows outside the chain were inserted: 1"


def test_a_rotated_key_still_verifies_the_rows_the_old_one_sealed(chain_db):
    _write(chain_db, 3)
    rotated = ChainKeys.from_secrets("a-new-audit-secret-of-at-least-32-bytes!", TEST_SECRET)
    assert _verify(chain_db, rotated).intact
    broken = _verify(
        chain_db, ChainKeys.from_secrets("another-secret-of-at-least-32-bytes!!")
    ).verdict.broken
    assert broken is not None and broken.sequence == 1
    assert broken.reason.startswith("sealed with an unknown key")


# Redaction by erasure and pruning by retention ----------------------------------------


def _redact(engine, sequences: list[int], tag: str = "erased-x") -> int:
    """What an erasure does to the chain: rewrite rows' identifying fields and seal its
    own row, counting them; the erasure row's sequence."""
    uow_factory = _uow_factory(engine)
    with uow_factory() as uow:
        rows = [r for r in uow.audit.chained_rows(up_to=10**9) if r.content.sequence in sequences]
        changes = [(r.row_id, replace(r.content, resource_id=tag, details={})) for r in rows]
        erasure = uow.audit.redact(
            changes,
            lambda sequence, marked: AuditEntry(
                action=ERASURE_ACTION, outcome="success", details=erasure_details(marked)
            ),
        )
        uow.commit()
    return erasure


def test_an_erasure_keeps_the_chain_intact(chain_db):
    _write(chain_db, 10)
    erasure = _redact(chain_db, [2, 5, 7])
    _write(chain_db, 3)
    report = _verify(chain_db)
    assert report.intact, report.verdict.broken
    assert erasure == 11 and report.head_sequence == 14
    with chain_db.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT sequence, resource_id, redacted_by FROM audit_logs "
                "WHERE redacted_by IS NOT NULL"
            )
        ).all()
    assert sorted(rows) == [(2, "erased-x", 11), (5, "erased-x", 11), (7, "erased-x", 11)]


def test_a_row_marked_redacted_behind_the_erasures_back_is_found(chain_db):
    _write(chain_db, 10)
    _redact(chain_db, [2, 5])
    # A superuser hides a change to row 8 by marking it redacted by the erasure (11).
    _superuser(
        chain_db,
        "UPDATE audit_logs SET details = '{\"i\": 99}', redacted_by = 11 WHERE sequence = 8",
    )
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.sequence == 11
    assert broken.reason == "the erasure redacted 2 rows here, but 3 rows say it redacted them"


def test_a_row_marked_redacted_by_no_erasure_is_found(chain_db):
    _write(chain_db, 10)
    _superuser(
        chain_db, "UPDATE audit_logs SET outcome = 'denied', redacted_by = 9 WHERE sequence = 4"
    )
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.sequence == 9
    assert "it is no erasure" in broken.reason
    _superuser(chain_db, "UPDATE audit_logs SET redacted_by = 50 WHERE sequence = 4")
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.reason == "1 rows say row 50 redacted them"


def test_after_an_erasure_a_changed_row_it_did_not_redact_is_found(chain_db):
    _write(chain_db, 10)
    _redact(chain_db, [3])
    _superuser(chain_db, "UPDATE audit_logs SET action = 'x' WHERE sequence = 4")
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.sequence == 4
    assert broken.reason == "the row's content was changed"


def test_the_trigger_admits_a_redaction_only_when_switched_on_and_only_of_its_columns(chain_db):
    _write(chain_db, 3)
    refused = (
        "UPDATE audit_logs SET resource_id = 'p', redacted_by = 9 WHERE sequence = 1",
        "SET LOCAL veritas.audit_redaction = 'on'; "
        "UPDATE audit_logs SET action = 'x', redacted_by = 9 WHERE sequence = 1",
        "SET LOCAL veritas.audit_redaction = 'on'; "
        "UPDATE audit_logs SET resource_id = 'p' WHERE sequence = 1",
        "DELETE FROM audit_logs WHERE sequence = 1",
        "SET LOCAL veritas.audit_prune = 'on'; DELETE FROM audit_logs WHERE sequence = 1",
    )
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"), chain_db.begin() as connection:
            connection.execute(text(statement))
    with chain_db.begin() as connection:
        connection.execute(text("SET LOCAL veritas.audit_redaction = 'on'"))
        connection.execute(
            text("UPDATE audit_logs SET resource_id = 'p', redacted_by = 9 WHERE sequence = 1")
        )


class _Later:
    def __init__(self, days: int) -> None:
        self.days = days

    def __call__(self):
        return datetime.now(UTC) + timedelta(days=self.days)


def test_pruned_rows_leave_a_chain_that_verifies_from_the_head_s_pruned_point(chain_db):
    _write(chain_db, 10)
    trail = AuditTrail(_uow_factory(chain_db), KEYS, clock=_Later(10))
    pruned = trail.prune(None, 5)
    assert pruned.pruned_sequence == 10 and pruned.deleted_count == 10
    _write(chain_db, 4)
    report = _verify(chain_db)
    assert report.intact, report.verdict.broken
    # After the prune's own row (11): 4 rows, and the verify row is not in its own check.
    assert report.verdict.checked_count == 5 and report.head_sequence == 15
    with chain_db.connect() as connection:
        head = connection.execute(text("SELECT pruned_sequence FROM audit_chain_head")).scalar_one()
        assert head == 10
        assert connection.execute(text("SELECT min(sequence) FROM audit_logs")).scalar() == 11
    # Edits after the pruned point are still found; a pruned row put back is too.
    _superuser(chain_db, "DELETE FROM audit_logs WHERE sequence = 12")
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.reason == "rows 12..12 are missing"


def test_a_pruned_row_put_back_is_found(chain_db):
    _write(chain_db, 4)
    AuditTrail(_uow_factory(chain_db), KEYS, clock=_Later(10)).prune(None, 5)
    _superuser(
        chain_db,
        "INSERT INTO audit_logs (action, outcome, details, sequence) "
        "VALUES ('auth.login', 'success', '{}', 2)",
    )
    broken = _verify(chain_db).verdict.broken
    assert broken is not None and broken.reason == "rows outside the chain were inserted: 1"


def test_an_erasure_whose_older_rows_were_pruned_still_verifies(chain_db):
    _write(chain_db, 10)
    _redact(chain_db, [2, 5, 8])  # erasure row 11
    with _uow_factory(chain_db)() as uow:
        uow.audit.prune(6)  # rows 2 and 5 go; 8 and the erasure stay
        uow.commit()
    report = _verify(chain_db)
    assert report.intact, report.verdict.broken
    _superuser(chain_db, "UPDATE audit_logs SET redacted_by = 11 WHERE sequence = 9")
    assert not _verify(chain_db).intact


def test_a_prune_refuses_rows_that_do_not_verify(chain_db):
    _write(chain_db, 6)
    _superuser(chain_db, "UPDATE audit_logs SET outcome = 'denied' WHERE sequence = 3")
    trail = AuditTrail(_uow_factory(chain_db), KEYS, clock=_Later(10))
    with pytest.raises(FailedPrecondition, match="do not verify"):
        trail.prune(None, 5)
    with chain_db.connect() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM audit_logs WHERE sequence <= 6")).scalar()
            == 6
        )
