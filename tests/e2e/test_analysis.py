"""Behaviour analyses and reviews through the real API."""

import math
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import func, select
from veritas.v1 import (
    analysis_pb2,
    analysis_pb2_grpc,
    common_pb2,
    resources_pb2,
    student_pb2,
    teacher_pb2,
)

from tests.e2e.exam_helpers import rpc_error, stubs, timestamp
from tests.e2e.monitoring_helpers import event, scene, stream
from tests.support import bad_request_fields
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import BehaviorAnalysis
from veritas_grpc.domain.identity import Role

RULES = [
    resources_pb2.BehaviorRule(event_type="tab_switch", weight=3, flagged=True),
    resources_pb2.BehaviorRule(event_type="eye_movement", weight=1),
]
REASONING = "chain of thought the student must never see"


@pytest.fixture
def world(channel, auth_stub, make_account):
    return scene(channel, auth_stub, make_account, behavior_rules=RULES)


@pytest.fixture
def scorer(make_account):
    return make_account(Role.SERVICE)


@pytest.fixture
def analysis_stub(channel):
    return analysis_pb2_grpc.AnalysisServiceStub(channel)


def _save(analysis_stub, scorer, attempt_id, **fields):
    values = {
        "attempt_id": attempt_id,
        "integrity_score": 0.8,
        "dropout_label": common_pb2.DROPOUT_LABEL_SAFE,
        "llm_summary": "Calm and focused.",
        "llm_reasoning": REASONING,
        "recommendations": ["Keep your eyes on the screen."],
        "model": resources_pb2.AnalysisModel(name="scorer", version="2.1"),
    }
    values.update(fields)
    return analysis_stub.CreateBehaviorAnalysis(
        analysis_pb2.CreateBehaviorAnalysisRequest(**values), metadata=scorer.metadata
    )


def _fixed_events(attempt_id):
    start = datetime.now(UTC) - timedelta(minutes=10)

    def at(seconds, **fields):
        return event(attempt_id, occur_time=timestamp(start + timedelta(seconds=seconds)), **fields)

    tab = at(4, event_type="tab_switch", severity=common_pb2.SEVERITY_WARNING)
    return [
        at(0, event_type="eye_movement", severity=common_pb2.SEVERITY_WARNING),
        tab,  # corroborates the gaze event 4 s earlier: both x1.5
        at(100, event_type="tab_switch", severity=common_pb2.SEVERITY_CRITICAL),
        at(
            200,
            event_type="network_loss",
            category=common_pb2.EVENT_CATEGORY_TECHNICAL,
            severity=common_pb2.SEVERITY_CRITICAL,
            is_anomaly=True,
        ),
    ], tab


def test_rule_based_score_explained_and_moved_by_a_dismissal(channel, world, analysis_stub):
    events, tab = _fixed_events(world.attempt_id)
    assert stream(channel, world.student.metadata, [events]).accepted_count == 4
    result = analysis_stub.AnalyzeAttempt(
        analysis_pb2.AnalyzeAttemptRequest(attempt_id=world.attempt_id),
        metadata=world.teacher.metadata,
    )
    penalty = (1 * 1 + 3 * 1) * 1.5 + 3 * 2  # gaze+tab corroborated, a critical tab switch
    assert result.penalty == penalty == 12.0
    assert result.integrity_score == round(math.exp(-penalty / 25), 4) == 0.6188
    assert [(t.event_type, t.penalty) for t in result.penalty_by_type] == [
        ("tab_switch", 10.5),
        ("eye_movement", 1.5),
    ]
    assert {c.event_id for c in result.contributions if c.corroborated} == {
        events[0].event_id,
        tab.event_id,
    }
    assert "network_loss" not in [c.event_type for c in result.contributions]
    assert result.saved and result.current.source == common_pb2.ANALYSIS_SOURCE_RULES

    _, teacher_stub = stubs(channel)
    reviewed = teacher_stub.ReviewEvent(
        teacher_pb2.ReviewEventRequest(
            attempt_id=world.attempt_id,
            event_id=tab.event_id,
            decision=common_pb2.REVIEW_DECISION_DISMISSED,
            note="the student was told to switch tabs",
        ),
        metadata=world.teacher.metadata,
    ).attempt
    # Without the tab switch nothing corroborates the gaze event: 1 + 6 = 7.
    assert reviewed.integrity_score == round(math.exp(-7 / 25), 4)
    view = teacher_stub.GetAttemptMonitoring(
        teacher_pb2.GetAttemptMonitoringRequest(attempt_id=world.attempt_id),
        metadata=world.teacher.metadata,
    )
    assert view.behavior_analysis.version == 2
    assert [(t.event_type, t.penalty) for t in view.behavior_analysis.penalty_by_type] == [
        ("tab_switch", 6.0),
        ("eye_movement", 1.0),
    ]
    [review] = view.reviews
    assert review.decision == common_pb2.REVIEW_DECISION_DISMISSED
    assert review.reviewer_id == world.teacher.user_id and review.reviewer_name
    assert review.note == "the student was told to switch tabs"


def test_saves_are_idempotent_versioned_and_win_over_the_rules(
    channel, world, analysis_stub, scorer, services
):
    first = _save(analysis_stub, scorer, world.attempt_id, request_id="run-1")
    again = _save(analysis_stub, scorer, world.attempt_id, request_id="run-1", integrity_score=0.1)
    assert again.replayed and again.analysis.id == first.analysis.id
    assert again.analysis.integrity_score == 0.8
    newer = _save(
        analysis_stub,
        scorer,
        world.attempt_id,
        request_id="run-2",
        integrity_score=0.65,
        learning_momentum_index=0.4,
    )
    assert (newer.analysis.version, newer.replayed) == (2, False)
    rules = analysis_stub.AnalyzeAttempt(
        analysis_pb2.AnalyzeAttemptRequest(attempt_id=world.attempt_id), metadata=scorer.metadata
    )
    assert not rules.saved and rules.current.id == newer.analysis.id
    assert rules.current.source == common_pb2.ANALYSIS_SOURCE_EXTERNAL
    with make_session_factory(services.engine)() as session:
        versions = session.scalar(
            select(func.count()).where(BehaviorAnalysis.attempt_id == uuid.UUID(world.attempt_id))
        )
    assert versions == 2  # history kept, one current


def test_flags_follow_scores_labels_and_reviewers(channel, world, analysis_stub, scorer):
    _, teacher_stub = stubs(channel)

    def flagged_ids():
        listed = teacher_stub.ListFlaggedAttempts(
            teacher_pb2.ListFlaggedAttemptsRequest(exam_id=world.exam_id),
            metadata=world.teacher.metadata,
        )
        return [a.id for a in listed.attempts]

    _save(analysis_stub, scorer, world.attempt_id, integrity_score=0.9)
    assert flagged_ids() == []
    _save(
        analysis_stub,
        scorer,
        world.attempt_id,
        integrity_score=0.9,
        dropout_label=common_pb2.DROPOUT_LABEL_COPY,
    )
    assert flagged_ids() == [world.attempt_id]
    review = teacher_stub.ReviewAttempt(
        teacher_pb2.ReviewAttemptRequest(
            attempt_id=world.attempt_id, outcome=common_pb2.REVIEW_OUTCOME_CLEARED, note="ok"
        ),
        metadata=world.teacher.metadata,
    )
    assert not review.attempt.flagged and flagged_ids() == []
    teacher_stub.ReviewAttempt(
        teacher_pb2.ReviewAttemptRequest(
            attempt_id=world.attempt_id, outcome=common_pb2.REVIEW_OUTCOME_VIOLATION
        ),
        metadata=world.teacher.metadata,
    )
    assert flagged_ids() == [world.attempt_id]
    board = teacher_stub.GetTeacherDashboard(
        teacher_pb2.GetTeacherDashboardRequest(), metadata=world.teacher.metadata
    )
    [overview] = [o for o in board.exams if o.exam.id == world.exam_id]
    assert overview.analytics.flagged_count == 1


def test_a_confirmed_event_flags_the_attempt(channel, world):
    one = event(world.attempt_id, event_type="tab_switch")
    stream(channel, world.student.metadata, [[one]])
    _, teacher_stub = stubs(channel)
    confirmed = teacher_stub.ReviewEvent(
        teacher_pb2.ReviewEventRequest(
            attempt_id=world.attempt_id,
            event_id=one.event_id,
            decision=common_pb2.REVIEW_DECISION_CONFIRMED,
        ),
        metadata=world.teacher.metadata,
    ).attempt
    assert confirmed.flagged


def test_students_see_recommendations_but_never_the_reasoning(
    channel, world, analysis_stub, scorer
):
    _save(analysis_stub, scorer, world.attempt_id, integrity_score=0.55)
    student_stub, teacher_stub = stubs(channel)
    teacher_stub.ReviewAttempt(  # a reviewer the student must not learn about
        teacher_pb2.ReviewAttemptRequest(
            attempt_id=world.attempt_id, outcome=common_pb2.REVIEW_OUTCOME_CLEARED, note="fine"
        ),
        metadata=world.teacher.metadata,
    )
    response = student_stub.GetAttempt(
        student_pb2.GetAttemptRequest(attempt_id=world.attempt_id),
        metadata=world.student.metadata,
    )
    assert list(response.attempt.recommendations) == ["Keep your eyes on the screen."]
    assert response.attempt.integrity_status == common_pb2.INTEGRITY_STATUS_WATCH
    dashboard = student_stub.GetStudentDashboard(
        student_pb2.GetStudentDashboardRequest(), metadata=world.student.metadata
    )
    for message in (response, dashboard):
        raw = message.SerializeToString()
        assert REASONING.encode() not in raw and b"scorer" not in raw
        assert world.teacher.user_id.encode() not in raw


def test_bad_analyses_are_refused_and_write_nothing(world, analysis_stub, scorer, services):
    def count():
        with make_session_factory(services.engine)() as session:
            return session.scalar(
                select(func.count()).where(
                    BehaviorAnalysis.attempt_id == uuid.UUID(world.attempt_id)
                )
            )

    for fields, field in (
        ({"integrity_score": 1.2}, "integrity_score"),
        ({"integrity_score": -0.1}, "integrity_score"),
        ({"dropout_label": common_pb2.DROPOUT_LABEL_UNSPECIFIED}, "dropout_label"),
        ({"recommendations": ["x"] * 21}, "recommendations"),
    ):
        error = rpc_error(_save, analysis_stub, scorer, world.attempt_id, **fields)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad_request_fields(error)
    missing = rpc_error(_save, analysis_stub, scorer, str(uuid.uuid4()))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert count() == 0


def test_who_may_analyse(channel, world, analysis_stub, make_account, auth_stub):
    outsider = make_account(Role.TEACHER)
    request = analysis_pb2.AnalyzeAttemptRequest(attempt_id=world.attempt_id)
    hidden = rpc_error(analysis_stub.AnalyzeAttempt, request, metadata=outsider.metadata)
    assert hidden.code() == grpc.StatusCode.NOT_FOUND
    saving = rpc_error(_save, analysis_stub, world.teacher, world.attempt_id)
    assert saving.code() == grpc.StatusCode.PERMISSION_DENIED
    student = rpc_error(analysis_stub.AnalyzeAttempt, request, metadata=world.student.metadata)
    assert student.code() == grpc.StatusCode.PERMISSION_DENIED


def test_risk_summary_and_metrics_repair(channel, world, analysis_stub, scorer, make_account):
    admin = make_account(Role.ADMIN)
    summary = analysis_pb2.GetHighRiskSummaryRequest()
    before = analysis_stub.GetHighRiskSummary(summary, metadata=admin.metadata)
    _save(
        analysis_stub,
        scorer,
        world.attempt_id,
        integrity_score=0.2,
        dropout_label=common_pb2.DROPOUT_LABEL_NO_INTEREST,
    )
    stream(
        channel,
        world.student.metadata,
        [[event(world.attempt_id, severity=common_pb2.SEVERITY_CRITICAL) for _ in range(3)]],
    )
    after = analysis_stub.GetHighRiskSummary(summary, metadata=scorer.metadata)
    assert after.by_label.no_interest_count == before.by_label.no_interest_count + 1
    assert after.by_integrity.at_risk_count == before.by_integrity.at_risk_count + 1
    assert after.by_integrity.unassessed_count == before.by_integrity.unassessed_count - 1
    assert after.last_hour_critical_event_count == before.last_hour_critical_event_count + 3
    flagged = [e.flagged_count for e in after.most_flagged_exams]
    assert 0 < len(flagged) <= 10 and flagged == sorted(flagged, reverse=True)
    repaired = analysis_stub.RecomputeStudentPerformance(
        analysis_pb2.RecomputeStudentPerformanceRequest(student_id=world.student.user_id),
        metadata=admin.metadata,
    )
    assert repaired.performance.mean_integrity_score == 0.2
    assert repaired.performance.dropout_label == common_pb2.DROPOUT_LABEL_NO_INTEREST
