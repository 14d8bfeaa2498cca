"""The migrations build the schema; the models must describe exactly what they build."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from veritas_grpc.db import migrate
from veritas_grpc.db.base import Base, is_partition

FOUNDATION_TABLES = {
    "users",
    "student_profiles",
    "teacher_profiles",
    "auth_sessions",
    "refresh_tokens",
    "revoked_access_tokens",
    "sign_in_throttles",
    "audit_logs",
    "exams",
    "exam_stats",
    "teacher_exam_permissions",
    "exam_attempts",
    "performance_metrics",
    "monitoring_events",
}


@pytest.fixture(scope="module")
def scratch_url(fresh_database):
    return fresh_database("migrations")


def _tables(url):
    engine = create_engine(url)
    try:
        names = set(inspect(engine).get_table_names()) - {"alembic_version"}
        return {name for name in names if not is_partition(name, "table")}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(scratch_url):
    migrate.upgrade(scratch_url)
    assert _tables(scratch_url) >= FOUNDATION_TABLES
    migrate.downgrade(scratch_url, "base")
    assert _tables(scratch_url) == set()
    migrate.upgrade(scratch_url)
    assert _tables(scratch_url) >= FOUNDATION_TABLES


def test_models_match_the_migrated_schema(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, type_, *_: not is_partition(name, type_),
                },
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], f"models and migrations differ: {differences}"


def test_audit_log_is_append_only(database_url):
    """In one transaction rolled back at the end: the row it inserts is outside the
    audit chain, and would break VerifyAuditLog for the tests that share the database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            outer = connection.begin()
            connection.execute(
                text("INSERT INTO audit_logs (action, outcome) VALUES ('test.append', 'success')")
            )
            for statement in (
                "UPDATE audit_logs SET outcome = 'failure' WHERE action = 'test.append'",
                "DELETE FROM audit_logs WHERE action = 'test.append'",
            ):
                attempt = connection.begin_nested()
                with pytest.raises(DBAPIError, match="append-only"):
                    connection.execute(text(statement))
                attempt.rollback()
            count = connection.scalar(
                text("SELECT count(*) FROM audit_logs WHERE action = 'test.append'")
            )
            outer.rollback()
        assert count == 1
    finally:
        engine.dispose()


def test_emails_are_unique_and_stored_lower_case(database_url):
    engine = create_engine(database_url)
    insert = text(
        "INSERT INTO users (email, password_hash, full_name, role) "
        "VALUES (:email, 'x', 'n', 'student')"
    )
    try:
        with engine.begin() as connection:
            connection.execute(insert, {"email": "unique-check@example.edu"})
        with pytest.raises(DBAPIError), engine.begin() as connection:
            connection.execute(insert, {"email": "unique-check@example.edu"})
        with pytest.raises(DBAPIError, match="email_lower"), engine.begin() as connection:
            connection.execute(insert, {"email": "Upper-Case@example.edu"})
        with pytest.raises(DBAPIError, match="role"), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (email, password_hash, full_name, role) "
                    "VALUES ('root@example.edu', 'x', 'n', 'root')"
                )
            )
    finally:
        engine.dispose()
