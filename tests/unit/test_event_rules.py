"""Who may write events to which attempt, and the severity of an event sent without one
(domain.events)."""

import uuid
from datetime import UTC, datetime, timedelta

from veritas_grpc.domain.events import (
    NOT_IN_PROGRESS,
    UNKNOWN_ATTEMPT,
    AttemptTarget,
    refusal,
)
from veritas_grpc.domain.exams import AttemptStatus
from veritas_grpc.domain.identity import Principal, Role

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def _principal(role: Role) -> Principal:
    return Principal(uuid.uuid4(), role, "jti", uuid.uuid4(), NOW + timedelta(hours=1))


def _target(student: Principal, status=AttemptStatus.IN_PROGRESS, ended_at=None, rules=None):
    return AttemptTarget(uuid.uuid4(), uuid.uuid4(), student.user_id, status, ended_at, rules or {})


def test_a_student_writes_to_their_own_attempt_in_progress():
    student = _principal(Role.STUDENT)
    assert refusal(student, _target(student), NOW, GRACE) is None


def test_another_students_attempt_is_as_unknown_as_a_missing_one():
    student, other = _principal(Role.STUDENT), _principal(Role.STUDENT)
    assert refusal(student, _target(other), NOW, GRACE) == UNKNOWN_ATTEMPT
    assert refusal(student, None, NOW, GRACE) == UNKNOWN_ATTEMPT
    assert UNKNOWN_ATTEMPT.kind == "not_found"


def test_a_monitoring_service_writes_to_any_attempt():
    student = _principal(Role.STUDENT)
    assert refusal(_principal(Role.SERVICE), _target(student), NOW, GRACE) is None


def test_a_finished_attempt_takes_late_events_only_within_the_grace():
    student = _principal(Role.STUDENT)
    ended = _target(student, AttemptStatus.SUBMITTED, ended_at=NOW - GRACE)
    assert refusal(student, ended, NOW, GRACE) is None
    assert refusal(student, ended, NOW + timedelta(seconds=1), GRACE) == NOT_IN_PROGRESS
    never_ended = _target(student, AttemptStatus.ABANDONED)
    assert refusal(student, never_ended, NOW, GRACE) == NOT_IN_PROGRESS


def test_an_event_without_severity_takes_the_exams_rule_or_info():
    target = _target(_principal(Role.STUDENT), rules={"face_not_detected": "CRITICAL"})
    assert target.severity_for("face_not_detected") == "CRITICAL"
    assert target.severity_for("tab_switch") == "INFO"
