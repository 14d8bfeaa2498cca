"""The running figures (services.attempts.apply_change) on the in-memory unit of work:
the exam's analytics and the students' sums move by exactly what each start, hand-in
and grade changes."""

from decimal import Decimal

import pytest

from tests.unit.fakes import principal
from tests.unit.use_cases import World
from veritas_grpc.domain.identity import Role


@pytest.fixture
def world():
    return World()


def _analytics(world):
    return world.dashboards.exam_analytics(principal(world.teacher), str(world.exam.id), 0, "")


def test_starting_counts_an_attempt_and_a_student(world):
    student = world.db.add_user(Role.STUDENT, "Sam Student")
    world.attempts.start(principal(student), str(world.exam.id))
    assert world.db.exam_figures(world.exam) == {"attempt_count": 1, "student_count": 1}
    assert world.db.student_sums(student) == {}  # nothing a student's figures count yet


def test_grading_moves_the_exam_analytics_and_the_student_figures(world):
    ada = world.db.add_user(Role.STUDENT, "Ada")
    bob = world.db.add_user(Role.STUDENT, "Bob")
    world.grade(world.submitted(ada), 80)
    world.grade(world.submitted(bob), 30)
    analytics = _analytics(world).overview.analytics
    assert (analytics.attempt_count, analytics.student_count) == (2, 2)
    assert (analytics.mean_points, analytics.pass_rate) == (Decimal("55.00"), 0.5)
    stats = world.db.exam_figures(world.exam)
    assert (stats["finished_count"], stats["graded_count"], stats["passed_count"]) == (2, 2, 1)
    assert stats["score_sum"] == Decimal("110.00")
    assert world.db.student_sums(ada) == {
        "finished_count": 1,
        "graded_count": 1,
        "percentage_sum": Decimal("80.00"),
        "passed_count": 1,
    }
    assert "passed_count" not in world.db.student_sums(bob)


def test_a_regrade_replaces_the_attempts_share_of_the_figures(world):
    bob = world.db.add_user(Role.STUDENT, "Bob")
    attempt = world.grade(world.submitted(bob), 30)
    world.grade(attempt, 65.5)
    analytics = _analytics(world).overview.analytics
    assert (analytics.mean_points, analytics.pass_rate) == (Decimal("65.50"), 1.0)
    stats = world.db.exam_figures(world.exam)
    assert (stats["graded_count"], stats["passed_count"], stats["score_sum"]) == (
        1,
        1,
        Decimal("65.50"),
    )
    assert world.db.student_sums(bob)["percentage_sum"] == Decimal("65.50")


def test_the_analytics_list_each_student_with_their_attempts_by_name(world):
    zoe = world.db.add_user(Role.STUDENT, "Zoe")
    ada = world.db.add_user(Role.STUDENT, "Ada")
    zoes = world.grade(world.submitted(zoe), 90)
    adas = world.submitted(ada)
    students = _analytics(world).students.items
    assert [(s.name, [a.id for a in s.attempts]) for s in students] == [
        ("Ada", [adas.id]),
        ("Zoe", [zoes.id]),
    ]
    assert world.db.audit_actions()[-1] == "exam.read_analytics"
