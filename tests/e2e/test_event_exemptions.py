"""Event exemptions through a real server: an exempt type's events count nowhere for
that student (the rule score, live alerts) and are still stored and shown, marked, to
teachers and to external scorers; a revoke makes them count again."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from veritas.v1 import (
    analysis_pb2,
    analysis_pb2_grpc,
    common_pb2,
    monitoring_pb2,
    monitoring_pb2_grpc,
    resources_pb2,
    teacher_pb2,
)

from tests.e2e.conftest import register_and_login
from tests.e2e.exam_helpers import open_window, published_exam, start, stubs, submit, timestamp
from tests.e2e.monitoring_helpers import stream
from veritas_grpc.domain.identity import Role

NOTE = "NOTE-e15: a reader in the room"
CRITICAL = common_pb2.SEVERITY_CRITICAL
WARNING = common_pb2.SEVERITY_WARNING
RULES = [
    resources_pb2.BehaviorRule(event_type="tab_switch", weight=2.5, default_severity=WARNING),
    resources_pb2.BehaviorRule(event_type="voice_detected", weight=2.0, default_severity=WARNING),
]


def _integrity(penalty: float) -> float:
    return round(math.exp(-penalty / 25), 4)


def _event(attempt_id: str, event_type: str, seconds_ago: float, **fields):
    return resources_pb2.MonitoringEvent(
        event_id=str(uuid.uuid4()),
        attempt_id=attempt_id,
        event_type=event_type,
        occur_time=timestamp(datetime.now(UTC) - timedelta(seconds=seconds_ago)),
        **fields,
    )


def _send(channel, who, events) -> list[str]:
    """The events, stored (the stream answers once they are committed)."""
    answer = stream(channel, who.metadata, [events])
    assert answer.accepted_count == len(events), answer
    return [e.event_id for e in events]


def _grant_exemption(teacher_stub, teacher, exam_id, student_id, *types) -> str:
    return teacher_stub.GrantAllowance(
        teacher_pb2.GrantAllowanceRequest(
            exam_id=exam_id,
            student_id=student_id,
            allowance=resources_pb2.AllowanceTerms(
                event_exemption=resources_pb2.EventExemption(event_types=types)
            ),
            note=NOTE,
        ),
        metadata=teacher.metadata,
    ).allowance.id


def _revoke(teacher_stub, teacher, allowance_id: str) -> None:
    teacher_stub.RevokeAllowance(
        teacher_pb2.RevokeAllowanceRequest(allowance_id=allowance_id), metadata=teacher.metadata
    )


@pytest.fixture
def world(channel, auth_stub, make_account):
    student_stub, teacher_stub = stubs(channel)
    teacher = make_account(Role.TEACHER)
    exam = published_exam(
        teacher_stub, teacher.metadata, behavior_rules=RULES, max_attempts=1, **open_window()
    )
    reader, other = register_and_login(auth_stub), register_and_login(auth_stub)
    attempts = {who.user_id: start(student_stub, who, exam.id).id for who in (reader, other)}
    return {
        "teacher": teacher,
        "teacher_stub": teacher_stub,
        "exam_id": exam.id,
        "reader": reader,
        "other": other,
        "attempts": attempts,
    }


def _analyze(channel, who, attempt_id) -> analysis_pb2.AnalyzeAttemptResponse:
    stub = analysis_pb2_grpc.AnalysisServiceStub(channel)
    return stub.AnalyzeAttempt(
        analysis_pb2.AnalyzeAttemptRequest(attempt_id=attempt_id), metadata=who.metadata
    )


def _alerts_until(watch, wanted: str) -> list[str]:
    """The event ids of the alerts the watch gives, up to and with `wanted`'s."""
    seen = []
    for message in watch:
        if message.HasField("alert"):
            seen.append(message.alert.event_id)
            if message.alert.event_id == wanted:
                return seen
    raise AssertionError(f"the watch ended before the alert of {wanted}")


def test_an_exempt_type_counts_nowhere_for_its_student_and_is_shown_marked(
    channel, make_account, world
):
    teacher, exam_id = world["teacher"], world["exam_id"]
    reader, other = world["reader"], world["other"]
    attempts = world["attempts"]
    reader_attempt, other_attempt = attempts[reader.user_id], attempts[other.user_id]
    teacher_stub = world["teacher_stub"]
    allowance_id = _grant_exemption(
        teacher_stub, teacher, exam_id, reader.user_id, "voice_detected"
    )
    watch = monitoring_pb2_grpc.MonitoringServiceStub(channel).WatchExamAlerts(
        monitoring_pb2.WatchExamAlertsRequest(exam_id=exam_id, after_sequence=0),
        metadata=teacher.metadata,
        timeout=60,
    )

    # The same behaviour from both: a tab switch (2.5) and two faces (no rule, an
    # anomaly: 1 x CRITICAL 2), then two CRITICAL voice_detected events (2 x 2 each).
    for who, attempt_id in ((reader, reader_attempt), (other, other_attempt)):
        _send(
            channel,
            who,
            [
                _event(attempt_id, "tab_switch", 30),
                _event(attempt_id, "multiple_faces", 28, severity=CRITICAL, is_anomaly=True),
            ],
        )
    before = {a: _analyze(channel, teacher, a).integrity_score for a in attempts.values()}
    assert before == {reader_attempt: _integrity(4.5), other_attempt: _integrity(4.5)}

    voices = {}
    for who, attempt_id in ((reader, reader_attempt), (other, other_attempt)):
        voices[attempt_id] = _send(
            channel,
            who,
            [
                _event(attempt_id, "voice_detected", s, severity=CRITICAL, is_anomaly=True)
                for s in (20, 10)
            ],
        )

    # Live alerts: the other student's voice events raise them, the reader's do not.
    # Alerts are numbered in commit order, so the reader's (sent first) would have come
    # before the other's last one.
    alerted = _alerts_until(watch, voices[other_attempt][-1])
    watch.cancel()
    assert set(voices[other_attempt]) <= set(alerted)
    assert not set(voices[reader_attempt]) & set(alerted)
    assert len(alerted) == 2 + 2  # each student's two faces, the other's two voices

    # The rule score: untouched for the reader, lower for the other.
    reader_score = _analyze(channel, teacher, reader_attempt)
    other_score = _analyze(channel, teacher, other_attempt)
    assert reader_score.integrity_score == before[reader_attempt]
    assert other_score.integrity_score == _integrity(4.5 + 8) < before[other_attempt]
    exempt = [c for c in reader_score.contributions if c.exempt_by_allowance]
    assert [c.event_id for c in exempt] == voices[reader_attempt]
    assert all(c.penalty == 0 and c.event_type == "voice_detected" for c in exempt)
    assert list(reader_score.contributions[-2:]) == exempt  # listed after the others
    assert "voice_detected" not in {t.event_type for t in reader_score.penalty_by_type}
    assert not any(c.exempt_by_allowance for c in other_score.contributions)
    assert {c.event_id for c in other_score.contributions if c.penalty == 4.0} == set(
        voices[other_attempt]
    )
    assert [c.exempt_by_allowance for c in reader_score.current.contributions] == [
        c.exempt_by_allowance for c in reader_score.contributions
    ]

    _check_marks(channel, make_account, world, set(voices[reader_attempt]))

    # Revoked after the attempt started: the attempt keeps its exemption.
    _revoke(teacher_stub, teacher, allowance_id)
    after = _analyze(channel, teacher, reader_attempt)
    assert after.integrity_score == before[reader_attempt]
    assert [c.event_id for c in after.contributions if c.exempt_by_allowance] == voices[
        reader_attempt
    ]


def _flagged(teacher_stub, teacher, exam_id) -> list[str]:
    listed = teacher_stub.ListFlaggedAttempts(
        teacher_pb2.ListFlaggedAttemptsRequest(exam_id=exam_id), metadata=teacher.metadata
    )
    return [a.id for a in listed.attempts]


def test_a_revoke_changes_no_attempt_taken_under_the_exemption_only_later_ones(
    channel, auth_stub, make_account
):
    """The reviewer's probe: revoked after the exam, the exemption still governs the
    attempt's rescore (here the one a dismissal of another event makes)."""
    student_stub, teacher_stub = stubs(channel)
    teacher = make_account(Role.TEACHER)
    exam = published_exam(
        teacher_stub, teacher.metadata, behavior_rules=RULES, max_attempts=2, **open_window()
    )
    reader = register_and_login(auth_stub)
    allowance_id = _grant_exemption(
        teacher_stub, teacher, exam.id, reader.user_id, "voice_detected"
    )
    taken = start(student_stub, reader, exam.id).id
    tab, *_ = _send(
        channel,
        reader,
        [_event(taken, "tab_switch", 40)]
        + [_event(taken, "voice_detected", s, severity=CRITICAL) for s in range(30, 0, -5)],
    )
    submit(student_stub, reader, taken)
    assert _analyze(channel, teacher, taken).integrity_score == _integrity(2.5)
    assert taken not in _flagged(teacher_stub, teacher, exam.id)

    _revoke(teacher_stub, teacher, allowance_id)
    teacher_stub.ReviewEvent(
        teacher_pb2.ReviewEventRequest(
            attempt_id=taken,
            event_id=tab,
            decision=common_pb2.REVIEW_DECISION_DISMISSED,
            note="told to switch tabs",
        ),
        metadata=teacher.metadata,
    )
    rescored = _analyze(channel, teacher, taken)
    assert rescored.integrity_score == 1.0  # the six voice events still exempt
    assert sum(c.exempt_by_allowance for c in rescored.contributions) == 6
    assert taken not in _flagged(teacher_stub, teacher, exam.id)
    view = teacher_stub.GetAttemptMonitoring(
        teacher_pb2.GetAttemptMonitoringRequest(attempt_id=taken), metadata=teacher.metadata
    )
    assert not view.allowances  # none standing
    assert sum(e.exempt_by_allowance for e in view.timeline) == 6  # still this attempt's

    # An attempt started after the revoke is held to them.
    later = start(student_stub, reader, exam.id).id
    _send(channel, reader, [_event(later, "voice_detected", 5, severity=CRITICAL)])
    counted = _analyze(channel, teacher, later)
    assert counted.integrity_score == _integrity(4.0)
    assert not any(c.exempt_by_allowance for c in counted.contributions)


def _check_marks(channel, make_account, world, exempt_ids: set[str]) -> None:
    """ListEvents, GetAttemptMonitoring and GetAttemptEvidence still show every event,
    the reader's voice events marked exempt; the monitoring answer lists the allowance
    with its note."""
    teacher, teacher_stub = world["teacher"], world["teacher_stub"]
    monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    analysis = analysis_pb2_grpc.AnalysisServiceStub(channel)
    admin = make_account(Role.ADMIN)
    for who, exempt_here in ((world["reader"], exempt_ids), (world["other"], set())):
        attempt_id = world["attempts"][who.user_id]
        listed = monitoring.ListEvents(
            monitoring_pb2.ListEventsRequest(attempt_id=attempt_id), metadata=teacher.metadata
        ).events
        assert len(listed) == 4
        assert {e.event_id for e in listed if e.exempt_by_allowance} == exempt_here

        view = teacher_stub.GetAttemptMonitoring(
            teacher_pb2.GetAttemptMonitoringRequest(attempt_id=attempt_id),
            metadata=teacher.metadata,
        )
        assert len(view.timeline) == 4
        assert {e.event_id for e in view.timeline if e.exempt_by_allowance} == exempt_here
        if exempt_here:
            (allowance,) = view.allowances
            assert allowance.note == NOTE and allowance.student_id == who.user_id
            assert list(allowance.terms.event_exemption.event_types) == ["voice_detected"]
        else:
            assert not view.allowances

        pages = list(
            analysis.GetAttemptEvidence(
                analysis_pb2.GetAttemptEvidenceRequest(attempt_id=attempt_id, page_size=3),
                metadata=admin.metadata,
            )
        )
        assert len(pages) == 2  # the marks hold on every page
        header = pages[0].evidence
        assert list(header.exempt_event_types) == (["voice_detected"] if exempt_here else [])
        events = [item.event for page in pages for item in page.events]
        assert len(events) == 4
        assert {e.event_id for e in events if e.exempt_by_allowance} == exempt_here


def test_a_grant_re_scores_and_re_flags_the_attempts_already_ended(
    channel, auth_stub, make_account, services
):
    student_stub, teacher_stub = stubs(channel)
    teacher, admin = make_account(Role.TEACHER), make_account(Role.ADMIN)
    exam = published_exam(
        teacher_stub, teacher.metadata, behavior_rules=RULES, max_attempts=1, **open_window()
    )
    reader = register_and_login(auth_stub)
    ended = start(student_stub, reader, exam.id).id
    _send(
        channel,
        reader,
        [_event(ended, "tab_switch", 40)]
        + [_event(ended, "voice_detected", s, severity=CRITICAL) for s in range(35, 0, -5)],
    )
    submit(student_stub, reader, ended)
    assert _analyze(channel, teacher, ended).integrity_score == _integrity(2.5 + 7 * 4)
    assert _flagged(teacher_stub, teacher, exam.id) == [ended]
    with services.engine.begin() as connection:  # the submit's job, out of the way
        connection.execute(
            text("DELETE FROM analysis_jobs WHERE attempt_id = :id"), {"id": uuid.UUID(ended)}
        )

    _grant_exemption(teacher_stub, teacher, exam.id, reader.user_id, "voice_detected")
    assert _flagged(teacher_stub, teacher, exam.id) == []
    view = teacher_stub.GetAttemptMonitoring(
        teacher_pb2.GetAttemptMonitoringRequest(attempt_id=ended), metadata=teacher.metadata
    )
    current = view.behavior_analysis
    assert current.source == common_pb2.ANALYSIS_SOURCE_RULES
    assert current.integrity_score == _integrity(2.5)
    assert sum(c.exempt_by_allowance for c in current.contributions) == 7
    assert not view.attempt.flagged
    (job,) = (
        analysis_pb2_grpc.AnalysisServiceStub(channel)
        .ListAnalysisJobs(
            analysis_pb2.ListAnalysisJobsRequest(attempt_id=ended), metadata=admin.metadata
        )
        .jobs
    )
    assert job.reason == analysis_pb2.ANALYSIS_JOB_REASON_EVENT_REVIEWED
    assert job.state == analysis_pb2.ANALYSIS_JOB_STATE_PENDING
