"""AttemptRepository.students_page on a database of its own: an exam's students by name,
through the walk of the accounts in name order or the sorted lookup of every student's
name, give the same pages: names shared by several accounts, students clustered at the
end of the name order, practice attempts and accounts without attempts in between."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.repositories import attempts as attempts_module
from veritas_grpc.repositories.attempts import AttemptRepository

ACCOUNTS = 300


def _exam(connection, teacher, title: str, practice: bool = False) -> uuid.UUID:
    exam = connection.execute(
        text(
            "INSERT INTO exams (title, max_score, pass_score, duration_minutes, status, "
            "created_by, is_practice) VALUES (:t, 10, 5, 60, 'PUBLISHED', :c, :p) RETURNING id"
        ),
        {"t": title, "c": teacher, "p": practice},
    ).scalar_one()
    connection.execute(text("INSERT INTO exam_stats (exam_id) VALUES (:x)"), {"x": exam})
    return exam


@pytest.fixture(scope="module")
def world(fresh_database):
    """300 accounts, names from 30 shared ones (ten accounts each); exam `spread` has
    every other account, exam `clustered` the 100 last in name order, and practice
    attempts of the others at `spread`."""
    url = fresh_database("students_page")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=2)
    with engine.begin() as connection:
        teacher = connection.execute(
            text(
                "INSERT INTO users (email, password_hash, full_name, role) "
                "VALUES ('t@uni.edu', '!', 'Teacher', 'teacher') RETURNING id"
            )
        ).scalar_one()
        people = [
            connection.execute(
                text(
                    "INSERT INTO users (email, password_hash, full_name, role) "
                    "VALUES (:e, '!', :n, 'student') RETURNING id, full_name"
                ),
                {"e": f"s{n}@uni.edu", "n": f"Student {n % 30:02d}"},
            ).one()
            for n in range(ACCOUNTS)
        ]
        by_name = sorted(people, key=lambda p: (p.full_name, str(p.id)))
        spread = _exam(connection, teacher, "spread")
        practice = _exam(connection, teacher, "practice", practice=True)
        clustered = _exam(connection, teacher, "clustered")
        members = {spread: people[::2], clustered: by_name[-100:]}
        for exam, students in members.items():
            for person in students:
                _attempt(connection, exam, person.id)
            connection.execute(
                text("UPDATE exam_stats SET student_count = :n WHERE exam_id = :x"),
                {"n": len(students), "x": exam},
            )
        for person in people[1::2]:  # in `spread` only as practice: not its students
            _attempt(connection, spread, person.id, practice=True)
            _attempt(connection, practice, person.id, practice=True)
        connection.execute(text("ANALYZE users"))  # the walk needs the accounts' estimate
    yield make_session_factory(engine), {"spread": spread, "clustered": clustered}
    engine.dispose()


def _attempt(connection, exam, student, practice: bool = False) -> None:
    connection.execute(
        text(
            "INSERT INTO exam_attempts (exam_id, student_id, attempt_number, deadline_at, "
            "is_practice) VALUES (:x, :s, 1 + (SELECT count(*) FROM exam_attempts WHERE "
            "student_id = :s AND exam_id = :x), now(), :p)"
        ),
        {"x": exam, "s": student, "p": practice},
    )


def _pages(factory, exam, size: int, read=AttemptRepository.students_page) -> list[list]:
    """Every page of the exam's students, `size` a page, as `read` gives them."""
    pages, after = [], None
    while True:
        with factory() as session:
            page = read(AttemptRepository(session), exam, after, size)
        if not page:
            return pages
        pages.append(page)
        after = (page[-1][1], page[-1][0])


@pytest.mark.parametrize("exam", ["spread", "clustered"])
@pytest.mark.parametrize("slack", [0.01, 1, 4, 1000])
def test_walked_and_sorted_pages_are_the_same(world, monkeypatch, exam, slack):
    factory, exams = world
    monkeypatch.setattr(attempts_module, "NAME_WALK_SLACK", slack)
    walks = []
    real_walk = AttemptRepository._walk_names

    def counting_walk(self, *args):
        found = real_walk(self, *args)
        walks.append(found is not None)
        return found

    monkeypatch.setattr(AttemptRepository, "_walk_names", counting_walk)
    expected = _pages(factory, exams[exam], 7, AttemptRepository._sorted_names)
    assert _pages(factory, exams[exam], 7) == expected
    students = [student for page in expected for student in page]
    assert len(students) == (150 if exam == "spread" else 100) == len(set(students))
    # Every page was tried by walking; the walk answered some and gave up on others.
    assert walks and (slack < 1 or any(walks))


def test_a_walk_that_reads_too_few_students_gives_up(world, monkeypatch):
    factory, exams = world
    monkeypatch.setattr(attempts_module, "NAME_WALK_SLACK", 1)
    with factory() as session:
        # The clustered exam's students come last: the first accounts hold none.
        assert AttemptRepository(session)._walk_names(exams["clustered"], None, 7, 50) is None
        walked = AttemptRepository(session)._walk_names(exams["spread"], None, 7, 50)
    assert walked is not None and len(walked) == 7
