"""Flagging (services.analysis, domain.exams.should_flag) on the in-memory unit of work:
an assessed attempt under the threshold or labelled COPY is flagged, and a reviewer's
CLEARED or VIOLATION decides over the assessment; the figures follow each change."""

import pytest

from tests.unit.fakes import EPOCH, principal
from tests.unit.use_cases import World
from veritas_grpc.domain.errors import PermissionDenied
from veritas_grpc.domain.exams import AccessLevel, DropoutLabel
from veritas_grpc.domain.identity import Role


@pytest.fixture
def world():
    return World()


@pytest.fixture
def attempt(world):
    return world.submitted(world.db.add_user(Role.STUDENT, "Sam Student"))


def _review(world, attempt, outcome, reviewer=None):
    actor = principal(reviewer or world.teacher)
    world.analysis.review_attempt(actor, str(attempt.id), outcome, "reviewed")
    return world.db.stores.attempts[attempt.id]


def test_integrity_under_the_threshold_flags_the_attempt(world, attempt):
    world.clock.advance(300)
    flagged = world.assess(attempt, integrity=0.42)
    assert flagged.flagged is True
    assert flagged.flagged_at == EPOCH.replace(minute=5)
    assert world.db.exam_figures(world.exam)["flagged_count"] == 1
    assert world.db.student_sums(world.db.stores.users[attempt.student_id])["flagged_count"] == 1


def test_integrity_at_the_threshold_does_not_flag(world, attempt):
    assessed = world.assess(attempt, integrity=0.5)
    assert assessed.flagged is False
    assert "flagged_count" not in world.db.exam_figures(world.exam)


def test_a_copy_label_flags_whatever_the_integrity(world, attempt):
    assessed = world.assess(attempt, integrity=0.97, label=DropoutLabel.COPY)
    assert assessed.flagged is True
    figures = world.db.exam_figures(world.exam)
    counts = [figures[k] for k in ("flagged_count", "copy_count", "high_risk_count")]
    assert counts == [1, 1, 1]


def test_cleared_by_a_reviewer_unflags_and_a_new_assessment_does_not_flag_again(world, attempt):
    world.assess(attempt, integrity=0.2)
    cleared = _review(world, attempt, "CLEARED")
    assert cleared.flagged is False and cleared.review_outcome == "CLEARED"
    assert "flagged_count" not in world.db.exam_figures(world.exam)
    assert world.assess(attempt, integrity=0.1).flagged is False  # the reviewer decided


def test_a_violation_flags_a_clean_attempt(world, attempt):
    world.assess(attempt, integrity=0.95)
    violation = _review(world, attempt, "VIOLATION")
    assert violation.flagged is True
    assert world.db.exam_figures(world.exam)["flagged_count"] == 1
    assert [r.outcome for r in world.db.stores.attempt_reviews] == ["VIOLATION"]
    assert world.db.audit_actions()[-1] == "review.attempt"


def test_reviewing_needs_manage_access(world, attempt):
    viewer = world.db.add_user(Role.TEACHER, "Vic Viewer")
    world.db.grant(world.exam, viewer, AccessLevel.VIEW)
    with pytest.raises(PermissionDenied):
        _review(world, attempt, "VIOLATION", reviewer=viewer)
    assert world.db.stores.attempts[attempt.id].flagged is False
    assert world.db.stores.attempt_reviews == []
