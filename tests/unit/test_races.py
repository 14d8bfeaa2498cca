"""Lost races (domain.errors.Conflict from a repository) on the in-memory unit of work:
each use case that expects one answers as it did when it caught the database's error."""

import pytest

from tests.unit.fakes import FakeAttempts, FakeDatabase, FakeUsers, principal
from tests.unit.use_cases import World
from veritas_grpc.domain.errors import AlreadyExists, FailedPrecondition
from veritas_grpc.domain.identity import Role
from veritas_grpc.security.passwords import PasswordHasher
from veritas_grpc.services.accounts import AccountService

PASSWORD = "correct horse battery"


def test_two_starts_racing_make_one_attempt(monkeypatch):
    world = World()
    student = world.db.add_user(Role.STUDENT, "Sam Student")
    world.attempts.start(principal(student), str(world.exam.id))
    # The second start counted the attempts before the first one committed.
    monkeypatch.setattr(FakeAttempts, "count_for", lambda self, student_id, exam_id: 0)
    with pytest.raises(FailedPrecondition, match="an attempt at this exam is already in progress"):
        world.attempts.start(principal(student), str(world.exam.id))
    assert len(world.db.stores.attempts) == 1
    assert world.db.exam_figures(world.exam) == {"attempt_count": 1, "student_count": 1}


@pytest.mark.parametrize("taken", ["email", "enrollment"])
def test_two_registrations_racing_leave_one_account(monkeypatch, taken):
    db = FakeDatabase()
    accounts = AccountService(db.uow, PasswordHasher(4))
    accounts.register_student("sam@example.edu", PASSWORD, "Sam", "S-1")
    # The second registration checked before the first one committed.
    monkeypatch.setattr(FakeUsers, "email_taken", lambda self, email: False)
    monkeypatch.setattr(FakeUsers, "enrollment_taken", lambda self, enrollment: False)
    email = "sam@example.edu" if taken == "email" else "other@example.edu"
    with pytest.raises(AlreadyExists) as lost:
        accounts.register_student(email, PASSWORD, "Sam Again", "S-1")
    assert lost.value.message == "an account with this e-mail or enrollment id already exists"
    assert [u.email for u in db.stores.users.values()] == ["sam@example.edu"]
    assert db.audit_actions() == ["auth.register"]
