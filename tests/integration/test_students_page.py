"""AttemptRepository.students_page on a database of its own: an exam's students by name
(its roster, exam_students, kept by migration 0020's triggers) give the same pages as
sorting the names of the exam's attempts' students: names shared by several accounts,
students clustered at the end of the name order, practice attempts left out, a second
attempt counted once, renames (and an erasure's blank name) followed at once, and the
backfill of attempts made before the migration, a rename racing a first attempt."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import text

from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.repositories.attempts import AttemptRepository

ACCOUNTS = 300
# The exam's students by name, from the attempts themselves.
RECOMPUTED = text(
    "SELECT DISTINCT u.id, u.full_name FROM exam_attempts a JOIN users u ON u.id = a.student_id "
    "WHERE a.exam_id = :x AND NOT a.is_practice ORDER BY u.full_name, u.id"
)


def _exam(connection, teacher, title: str, practice: bool = False) -> uuid.UUID:
    return connection.execute(
        text(
            "INSERT INTO exams (title, max_score, pass_score, duration_minutes, status, "
            "created_by, is_practice) VALUES (:t, 10, 5, 60, 'PUBLISHED', :c, :p) RETURNING id"
        ),
        {"t": title, "c": teacher, "p": practice},
    ).scalar_one()


def _attempt(connection, exam, student, practice: bool = False) -> None:
    connection.execute(
        text(
            "INSERT INTO exam_attempts (exam_id, student_id, attempt_number, deadline_at, "
            "status, ended_at, is_practice) VALUES (:x, :s, 1 + (SELECT count(*) FROM "
            "exam_attempts WHERE student_id = :s AND exam_id = :x), now(), 'ABANDONED', now(), :p)"
        ),
        {"x": exam, "s": student, "p": practice},
    )


def _people(connection, count: int, prefix: str) -> list:
    return [
        connection.execute(
            text(
                "INSERT INTO users (email, password_hash, full_name, role) "
                "VALUES (:e, '!', :n, 'student') RETURNING id, full_name"
            ),
            {"e": f"{prefix}{n}@uni.edu", "n": f"Student {n % 30:02d}"},
        ).one()
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def world(fresh_database):
    """300 accounts, names from 30 shared ones (ten accounts each); exam `spread` has
    every other account (twice some), exam `clustered` the 100 last in name order, and
    practice attempts of the others at `spread`. Exam `before` got its attempts before
    migration 0020 (the backfill's), the others after (the trigger's)."""
    url = fresh_database("students_page")
    migrate.upgrade(url, "0019_users_by_name")
    engine = make_engine(url, pool_size=2)
    with engine.begin() as connection:
        teacher = connection.execute(
            text(
                "INSERT INTO users (email, password_hash, full_name, role) "
                "VALUES ('t@uni.edu', '!', 'Teacher', 'teacher') RETURNING id"
            )
        ).scalar_one()
        early = _people(connection, 40, "early")
        before = _exam(connection, teacher, "before")
        for person in early[::3]:
            _attempt(connection, before, person.id)
            _attempt(connection, before, person.id)
        _attempt(connection, before, early[1].id, practice=True)
    migrate.upgrade(url)
    with engine.begin() as connection:
        people = _people(connection, ACCOUNTS, "s")
        by_name = sorted(people, key=lambda p: (p.full_name, str(p.id)))
        spread = _exam(connection, teacher, "spread")
        practice = _exam(connection, teacher, "practice", practice=True)
        clustered = _exam(connection, teacher, "clustered")
        for exam, students in {spread: people[::2], clustered: by_name[-100:]}.items():
            for person in students:
                _attempt(connection, exam, person.id)
        for person in people[::10]:  # a second attempt: still one student
            _attempt(connection, spread, person.id)
        for person in people[1::2]:  # in `spread` only as practice: not its students
            _attempt(connection, spread, person.id, practice=True)
            _attempt(connection, practice, person.id, practice=True)
    exams = {"spread": spread, "clustered": clustered, "before": before, "practice": practice}
    yield engine, make_session_factory(engine), exams, people
    engine.dispose()


def _pages(factory, exam, size: int) -> list[list]:
    """Every page of the exam's students, `size` a page."""
    pages, after = [], None
    while True:
        with factory() as session:
            page = AttemptRepository(session).students_page(exam, after, size)
        if not page:
            return pages
        pages.append(page)
        after = (page[-1][1], page[-1][0])


def _recomputed(engine, exam) -> list[tuple]:
    with engine.connect() as connection:
        return [(row.id, row.full_name) for row in connection.execute(RECOMPUTED, {"x": exam})]


@pytest.mark.parametrize("exam", ["spread", "clustered", "before", "practice"])
def test_the_pages_are_the_exams_students_by_name(world, exam):
    engine, factory, exams, _ = world
    pages = _pages(factory, exams[exam], 7)
    students = [student for page in pages for student in page]
    assert students == _recomputed(engine, exams[exam])
    assert len(students) == {"spread": 150, "clustered": 100, "before": 14, "practice": 0}[exam]
    assert all(len(page) == 7 for page in pages[:-1])


def test_a_rename_and_an_erasures_blank_name_are_followed(world):
    engine, factory, exams, people = world
    renamed, blanked = people[0], people[2]
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE users SET full_name = 'Aaron First' WHERE id = :u"), {"u": renamed.id}
        )
        connection.execute(text("UPDATE users SET full_name = '' WHERE id = :u"), {"u": blanked.id})
    try:
        first = _pages(factory, exams["spread"], 7)[0]
        assert first[:2] == [(blanked.id, ""), (renamed.id, "Aaron First")]
        students = [student for page in _pages(factory, exams["spread"], 7) for student in page]
        assert students == _recomputed(engine, exams["spread"])
    finally:
        with engine.begin() as connection:
            for person in (renamed, blanked):
                connection.execute(
                    text("UPDATE users SET full_name = :n WHERE id = :u"),
                    {"n": person.full_name, "u": person.id},
                )


def _in_thread(engine, statements, params) -> tuple[threading.Thread, dict]:
    """Run the statements in a transaction of their own, in a thread; the dict gets the
    backend's pid as soon as it is known, and `done` once it committed."""
    state: dict = {}

    def run() -> None:
        with engine.begin() as connection:
            state["pid"] = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            for statement in statements:
                connection.execute(text(statement), params)
        state["done"] = True

    thread = threading.Thread(target=run)
    thread.start()
    return thread, state


def _until_blocked_or_done(engine, thread, state) -> None:
    """Until the thread's transaction waits for a lock, or has finished."""
    for _ in range(500):
        if not thread.is_alive():
            return
        if "pid" in state:
            with engine.connect() as connection:
                waiting = connection.execute(
                    text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p"),
                    {"p": state["pid"]},
                ).scalar()
            if waiting:
                return
        time.sleep(0.01)
    raise AssertionError("the concurrent transaction neither waited nor finished")


@pytest.mark.parametrize("first", ["rename", "attempt"])
def test_a_rename_racing_a_first_attempt_leaves_the_new_name(world, first):
    """Whichever of a rename and a student's first attempt at an exam comes first, both
    uncommitted when the other runs, the roster ends with the new name."""
    engine, factory, exams, people = world
    person = people[4]
    with engine.begin() as connection:
        teacher = connection.execute(
            text("SELECT id FROM users WHERE email = 't@uni.edu'")
        ).scalar_one()
        exam = _exam(connection, teacher, f"race {first}")
    attempt = (
        "INSERT INTO exam_attempts (exam_id, student_id, attempt_number, deadline_at, "
        "status, ended_at) VALUES (:x, :s, 1, now(), 'ABANDONED', now())"
    )
    rename = "UPDATE users SET full_name = 'Renamed Racer' WHERE id = :s"
    params = {"x": exam, "s": person.id}
    held, racing = (rename, attempt) if first == "rename" else (attempt, rename)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            connection.execute(text(held), params)
            thread, state = _in_thread(engine, [racing], params)
            _until_blocked_or_done(engine, thread, state)
            transaction.commit()
        thread.join(timeout=30)
        assert state.get("done")
        assert _pages(factory, exam, 7) == [[(person.id, "Renamed Racer")]]
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE users SET full_name = :n WHERE id = :s"),
                {"n": person.full_name, "s": person.id},
            )
