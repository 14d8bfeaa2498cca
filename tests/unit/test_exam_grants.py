"""Sharing exams (services.exams) on the in-memory unit of work: the creator (or an admin)
shares; VIEW lets a teacher read the exam, MANAGE lets them change it; nobody else even
learns that it exists."""

import pytest

from tests.unit.fakes import principal
from tests.unit.use_cases import World
from veritas_grpc.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from veritas_grpc.domain.exams import AccessLevel, ExamStatus
from veritas_grpc.domain.identity import Role


@pytest.fixture
def world():
    world = World()
    world.exam.status = ExamStatus.DRAFT.value
    world.colleague = world.db.add_user(Role.TEACHER, "Cole Colleague")
    return world


def _grant(world, level, to=None, by=None):
    actor = principal(by or world.teacher)
    teacher = to or world.colleague
    return world.exams.grant(actor, str(world.exam.id), str(teacher.id), level)


def _publish(world, actor):
    return world.exams.publish(principal(actor), str(world.exam.id))


def _read(world, actor):
    return world.dashboards.exam_analytics(principal(actor), str(world.exam.id), 0, "")


def test_without_a_grant_another_teacher_cannot_see_the_exam(world):
    with pytest.raises(NotFound, match="exam not found"):
        _read(world, world.colleague)
    with pytest.raises(NotFound, match="exam not found"):
        _publish(world, world.colleague)


def test_view_lets_a_teacher_read_but_not_change_the_exam(world):
    grant = _grant(world, AccessLevel.VIEW)
    assert (grant.teacher_id, grant.level) == (world.colleague.id, AccessLevel.VIEW)
    assert _read(world, world.colleague).overview.exam.access is AccessLevel.VIEW
    with pytest.raises(PermissionDenied, match="MANAGE"):
        _publish(world, world.colleague)
    assert world.exam.status == ExamStatus.DRAFT.value


def test_manage_lets_a_teacher_change_the_exam_but_not_share_it(world):
    _grant(world, AccessLevel.MANAGE)
    published = _publish(world, world.colleague)
    assert published.status is ExamStatus.PUBLISHED
    third = world.db.add_user(Role.TEACHER, "Thea Third")
    with pytest.raises(PermissionDenied, match="only the exam's creator or an admin"):
        _grant(world, AccessLevel.VIEW, to=third, by=world.colleague)
    assert (world.exam.id, third.id) not in world.db.stores.grants


def test_a_grant_changes_level_in_place_and_is_audited(world):
    _grant(world, AccessLevel.VIEW)
    _grant(world, AccessLevel.MANAGE)
    assert world.db.stores.grants == {(world.exam.id, world.colleague.id): "MANAGE"}
    grants = [e for e in world.db.stores.audit if e.action == "exam.grant"]
    assert [e.details["level"] for e in grants] == ["VIEW", "MANAGE"]


def test_an_admin_may_share_any_exam(world):
    admin = world.db.add_user(Role.ADMIN, "Avery Admin")
    _grant(world, AccessLevel.VIEW, by=admin)
    assert world.db.stores.grants[(world.exam.id, world.colleague.id)] == "VIEW"


def test_grants_go_only_to_teachers_other_than_the_creator(world):
    with pytest.raises(FailedPrecondition, match="creator already has MANAGE"):
        _grant(world, AccessLevel.VIEW, to=world.teacher)
    student = world.db.add_user(Role.STUDENT, "Sam Student")
    with pytest.raises(NotFound, match="teacher not found"):
        _grant(world, AccessLevel.VIEW, to=student)
    with pytest.raises(InvalidArgument):
        _grant(world, None)
    assert world.db.stores.grants == {}


def test_revoking_takes_the_access_away(world):
    _grant(world, AccessLevel.VIEW)
    world.exams.revoke(principal(world.teacher), str(world.exam.id), str(world.colleague.id))
    with pytest.raises(NotFound, match="exam not found"):
        _read(world, world.colleague)
    with pytest.raises(NotFound, match="no grant"):
        world.exams.revoke(principal(world.teacher), str(world.exam.id), str(world.colleague.id))
