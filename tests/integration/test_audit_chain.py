"""The audit trail's hash chain on a real PostgreSQL: concurrent writers never fork it,
and a superuser's edits through SQL (the append-only trigger disabled) are each found."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support import TEST_SECRET
from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.domain.audit_chain import ChainKeys
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
