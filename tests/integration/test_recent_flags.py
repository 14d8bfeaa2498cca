"""AttemptRepository.recent_flags on a database of its own: a teacher's latest flagged
attempts are found per visible exam (their own and granted ones) and merged, and give
exactly what sorting every visible flagged attempt would, ties included; an admin's
cover every exam. And the other reads whose statements are built once and bound to the
viewer at each call (exams visible and their access, a student's attempts on visible
exams, flagged pages): asked by one viewer after another, each answers for its own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.integration.rows import insert_user
from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.repositories.attempts import _RECENT_FLAGS, AttemptRepository, _history
from veritas_grpc.repositories.audit import _LOCK_HEAD
from veritas_grpc.repositories.exams import ExamRepository, _visible_exams

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
# exam -> (creator, [minutes before NOW of each flagged attempt]); `granted` is shared
# with teacher 1. Exam `old` has more flags than a page, with four at minute 87: the
# page ends among them (its order: flagged_at, then id, newest first).
EXAMS = {
    "old": ("t1", [100 - n for n in range(25)] + [87, 87, 87]),
    "newest": ("t1", [10, 9, 8, 7, 6]),
    "granted": ("t2", [50, 49, 48]),
    "others": ("t2", [5, 4, 3, 2, 1, 0]),
    # Teacher 3's: 25 flags at one moment, behind 5 newer ones, so that the page and
    # each exam's share of it end inside a tie (decided by id).
    "tied": ("t3", [30] * 25),
    "newer": ("t3", [20, 19, 18, 17, 16]),
}
LIMIT = 20


@pytest.fixture(scope="module")
def world(fresh_database):
    url = fresh_database("recent_flags")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=2)
    flagged: list[tuple[datetime, uuid.UUID, str]] = []
    with engine.begin() as connection:
        teachers = {
            t: insert_user(connection, f"{t}@uni.edu", "teacher") for t in ("t1", "t2", "t3")
        }
        admin = insert_user(connection, "admin@uni.edu", "admin")
        for name, (creator, minutes) in EXAMS.items():
            exam = connection.execute(
                text(
                    "INSERT INTO exams (title, max_score, pass_score, duration_minutes, "
                    "status, created_by) VALUES (:t, 10, 5, 60, 'PUBLISHED', :c) RETURNING id"
                ),
                {"t": name, "c": teachers[creator]},
            ).scalar_one()
            if name == "granted":
                connection.execute(
                    text(
                        "INSERT INTO teacher_exam_permissions (exam_id, teacher_id, level, "
                        "granted_by) VALUES (:x, :t, 'VIEW', :c)"
                    ),
                    {"x": exam, "t": teachers["t1"], "c": teachers["t2"]},
                )
            # Unflagged attempts newer than every flag: never listed.
            for n, ago in enumerate([*minutes, -1, -2]):
                student = insert_user(connection, f"{name}-{n}@uni.edu", "student")
                at = NOW - timedelta(minutes=ago)
                attempt = connection.execute(
                    text(
                        "INSERT INTO exam_attempts (exam_id, student_id, attempt_number, "
                        "deadline_at, flagged, flagged_at) VALUES (:x, :s, 1, :d, :f, :at) "
                        "RETURNING id"
                    ),
                    {"x": exam, "s": student, "d": NOW, "f": ago >= 0, "at": at},
                ).scalar_one()
                if ago >= 0:
                    flagged.append((at, attempt, name))
        # One student with an unflagged attempt on an exam of each teacher.
        shared = insert_user(connection, "shared@uni.edu", "student")
        for name in ("old", "others", "tied"):
            connection.execute(
                text(
                    "INSERT INTO exam_attempts (exam_id, student_id, attempt_number, "
                    "deadline_at) SELECT id, :s, 1, :d FROM exams WHERE title = :t"
                ),
                {"s": shared, "d": NOW, "t": name},
            )
        teachers["shared"] = shared
    yield make_session_factory(engine), teachers, admin, flagged
    engine.dispose()


def _listed(factory, principal: Principal) -> list[uuid.UUID]:
    with factory() as session:
        return [found.id for found in AttemptRepository(session).recent_flags(principal, LIMIT)]


def _principal(user_id: uuid.UUID, role: Role) -> Principal:
    return Principal(user_id, role, "test", uuid.uuid4(), NOW + timedelta(hours=1))


def _expected(flagged, exams: set[str]) -> list[uuid.UUID]:
    mine = sorted((f for f in flagged if f[2] in exams), key=lambda f: (f[0], f[1]), reverse=True)
    return [attempt for _, attempt, _ in mine[:LIMIT]]


def test_a_teachers_recent_flags_are_the_latest_of_their_visible_exams(world):
    factory, teachers, _, flagged = world
    listed = _listed(factory, _principal(teachers["t1"], Role.TEACHER))
    assert listed == _expected(flagged, {"old", "newest", "granted"})
    assert len(listed) == LIMIT


def test_ties_are_broken_by_id_within_each_exam_and_across(world):
    factory, teachers, _, flagged = world
    listed = _listed(factory, _principal(teachers["t3"], Role.TEACHER))
    assert listed == _expected(flagged, {"tied", "newer"})
    assert len(listed) == LIMIT


def test_an_admins_recent_flags_cover_every_exam(world):
    factory, _, admin, flagged = world
    assert _listed(factory, _principal(admin, Role.ADMIN)) == _expected(flagged, set(EXAMS))


def test_a_teacher_without_flagged_exams_sees_none(world):
    factory, _, _, _ = world
    assert _listed(factory, _principal(uuid.uuid4(), Role.TEACHER)) == []


# Who sees which exams of EXAMS, and how: t1 was granted VIEW on `granted`.
VISIBLE = {
    "t1": {"old": "MANAGE", "newest": "MANAGE", "granted": "VIEW"},
    "t2": {"granted": "MANAGE", "others": "MANAGE"},
    "t3": {"tied": "MANAGE", "newer": "MANAGE"},
    "admin": {name: "MANAGE" for name in EXAMS},
}


def test_each_viewer_gets_its_own_exams_and_attempts_one_after_another(world):
    factory, teachers, admin, _ = world
    principals = {t: _principal(teachers[t], Role.TEACHER) for t in ("t1", "t2", "t3")}
    principals["admin"] = _principal(admin, Role.ADMIN)
    with factory() as session:
        ids = dict(session.execute(text("SELECT title, id FROM exams")).all())
    for who in ["t1", "t2", "t1", "t3", "admin", "t2", "t1"]:
        viewer, expected = principals[who], VISIBLE[who]
        with factory() as session:
            exams = ExamRepository(session)
            listed = exams.list_visible(viewer, None, 50)
            assert {v.exam.title: v.access.name for v, _ in listed} == expected, who
            for title, exam_id in ids.items():
                found = exams.get_visible(viewer, exam_id)
                assert (found and found.access.name) == expected.get(title), (who, title)
            attempts = AttemptRepository(session).on_visible_exams(viewer, teachers["shared"], 10)
            assert {row.title for row in attempts} == set(expected) & {"old", "others", "tied"}


def test_the_visible_exams_page_by_page(world):
    factory, teachers, _, _ = world
    viewer = _principal(teachers["t1"], Role.TEACHER)
    pages, after = [], None
    while True:
        with factory() as session:
            page = ExamRepository(session).list_visible(viewer, after, 2)
        if not page:
            break
        pages.append([v.exam.title for v, _ in page])
        last = page[-1][0].exam
        after = (last.created_at, last.id)
    assert sorted(title for page in pages for title in page) == sorted(VISIBLE["t1"])
    assert [len(page) for page in pages] == [2, 1]


def test_an_exams_flagged_attempts_page_by_page(world):
    """Pages of 10 through `old`'s 28 flags, four of them at one moment (by id then)."""
    factory, _, _, flagged = world
    with factory() as session:
        exam = session.execute(text("SELECT id FROM exams WHERE title = 'old'")).scalar_one()
    listed, after = [], None
    while True:
        with factory() as session:
            page = AttemptRepository(session).flagged_page(exam, after, 10)
        if not page:
            break
        listed += [row.id for row in page]
        after = (page[-1].flagged_at, page[-1].id)
    mine = sorted((f for f in flagged if f[2] == "old"), key=lambda f: (f[0], f[1]), reverse=True)
    assert listed == [attempt for _, attempt, _ in mine] and len(listed) == 28


def _typed(rows) -> list[list[tuple[type, object]]]:
    return [[(type(value), value) for value in row] for row in rows]


def test_the_prepared_reads_answer_as_their_statements_do(world):
    """Values and their Python types (UUIDs, datetimes, Decimals, bytes) alike, for every
    viewer: the prepared EXECUTE against the statement it was made from."""
    factory, teachers, admin, _ = world
    after = {"after_created_at": NOW + timedelta(days=1), "after_id": uuid.uuid4()}
    reads = [(_LOCK_HEAD, {})]
    for viewer in (*(teachers[t] for t in ("t1", "t2", "t3")), admin):
        seen = {"viewer_id": viewer, "limit": LIMIT}
        reads += [(_RECENT_FLAGS, seen), (_history(False), {**seen, "student_id": viewer})]
        reads += [
            (_visible_exams(everyone, paged), {**seen, **after})
            for everyone in (False, True)
            for paged in (False, True)
        ]
    reads.append((_history(None), {"student_id": teachers["shared"], "limit": LIMIT}))
    compared = 0
    with factory() as session:
        connection = session.connection()
        for prepared, parameters in reads:
            planned = _typed(connection.execute(prepared.statement, parameters))
            assert _typed(prepared.execute(connection, parameters)) == planned, prepared.name
            compared += len(planned)
    assert compared > 4 * LIMIT  # not a comparison of empty answers
