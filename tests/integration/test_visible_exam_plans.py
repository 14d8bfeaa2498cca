"""A teacher's listings start from their own exams, read by index, not from every exam.

visible_to's OR (created by the viewer, or granted) cannot be read from an index, so a
listing filtered by it scanned every exam (docs/BENCH_SCALE.md has the figures at
98,000 exams). On a database with 20,000 exams of 1,000 other teachers, each with a
flagged attempt, the prepared listings (with the generic plans the server runs them
with) read only the viewer's rows of `exams`, and find exactly their exams."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import psycopg2

from tests.integration.rows import insert_user
from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine
from veritas_grpc.db.prepared import Prepared
from veritas_grpc.repositories.attempts import _RECENT_FLAGS
from veritas_grpc.repositories.exams import _visible_exams

OTHER_TEACHERS = 1000
EXAMS_EACH = 20
# The viewer's own three exams and the one granted: rows of `exams` a listing may read
# (each perhaps twice: found by index, then read by key), with room for a plan's detour.
MOST_EXAM_ROWS_READ = 20

_OTHERS = text(
    "INSERT INTO users (email, password_hash, full_name, role) "
    "SELECT 'other' || n || '@uni.edu', '!', 'Other ' || n, 'teacher' "
    "FROM generate_series(1, :count) n"
)
# Each creator's exams a minute apart, so that the listings' order is by time first.
_EXAMS = text(
    "INSERT INTO exams (title, max_score, pass_score, duration_minutes, status, created_by, "
    "created_at) SELECT 'exam ' || n, 10, 5, 60, 'PUBLISHED', users.id, "
    "now() - n * interval '1 minute' "
    "FROM users, generate_series(1, :each) n WHERE users.email LIKE :creators RETURNING id"
)
# A flagged attempt on every exam, each flagged at its own time.
_FLAGS = text(
    "INSERT INTO exam_attempts (exam_id, student_id, attempt_number, deadline_at, flagged, "
    "flagged_at) SELECT id, :s, 1, now(), true, "
    "now() - row_number() OVER (ORDER BY id) * interval '1 minute' FROM exams"
)


@pytest.fixture(scope="module")
def world(fresh_database):
    url = fresh_database("visible_exam_plans")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=1)
    with engine.begin() as connection:
        viewer = insert_user(connection, "viewer@uni.edu", "teacher")
        own = connection.execute(_EXAMS, {"each": 3, "creators": "viewer@%"}).scalars().all()
        connection.execute(_OTHERS, {"count": OTHER_TEACHERS})
        granted = connection.execute(_EXAMS, {"each": EXAMS_EACH, "creators": "other%"}).first()[0]
        connection.execute(
            text(
                "INSERT INTO teacher_exam_permissions (exam_id, teacher_id, level, granted_by) "
                "SELECT :x, :t, 'VIEW', created_by FROM exams WHERE id = :x"
            ),
            {"x": granted, "t": viewer},
        )
        connection.execute(_FLAGS, {"s": insert_user(connection, "student@uni.edu", "student")})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
    yield engine, viewer, {*own, granted}
    engine.dispose()


def _exam_rows_read(plan: dict) -> int:
    """Rows of `exams` the plan's nodes returned or filtered away, over all their loops."""
    here = 0
    if plan.get("Relation Name") == "exams":
        rows = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        here = round(rows * plan["Actual Loops"])
    return here + sum(_exam_rows_read(child) for child in plan.get("Plans", []))


def _explained(engine, prepared: Prepared, parameters: dict) -> tuple[dict, list]:
    execute = str(prepared.run.compile(dialect=psycopg2.dialect()))
    with engine.connect() as connection:
        prepared.prepare_on(connection)
        found = connection.exec_driver_sql(execute, parameters).all()
        explained = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}", parameters
        ).scalar_one()
        connection.rollback()
    return explained[0]["Plan"], found


def test_the_dashboard_exams_read_only_the_viewers_rows(world):
    engine, viewer, visible = world
    plan, rows = _explained(
        engine, _visible_exams(False, False), {"viewer_id": str(viewer), "limit": 50}
    )
    assert {row.id for row in rows} == visible
    assert _exam_rows_read(plan) <= MOST_EXAM_ROWS_READ


def test_a_later_page_reads_only_the_viewers_rows(world):
    engine, viewer, _ = world
    listing = {"viewer_id": str(viewer), "limit": 50}
    newest_first = _explained(engine, _visible_exams(False, False), listing)[1]
    after = newest_first[1]  # as if a page of two had ended there
    plan, rows = _explained(
        engine,
        _visible_exams(False, True),
        listing | {"after_created_at": after.created_at, "after_id": after.id},
    )
    assert [row.id for row in rows] == [row.id for row in newest_first[2:]]
    assert _exam_rows_read(plan) <= MOST_EXAM_ROWS_READ


def test_recent_flags_read_only_the_viewers_exams(world):
    engine, viewer, visible = world
    plan, rows = _explained(engine, _RECENT_FLAGS, {"viewer_id": str(viewer), "limit": 20})
    assert {row.exam_id for row in rows} == visible
    assert _exam_rows_read(plan) <= MOST_EXAM_ROWS_READ
