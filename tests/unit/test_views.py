"""Views (services/views) built from the typed models, and the servicers' conversions of
views to messages: the figures are computed once, in the views; a conversion only maps
fields, an absent figure becoming an unset optional field."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from veritas.v1 import common_pb2, resources_pb2

from veritas_grpc.api import analysis_convert, exam_convert
from veritas_grpc.db.models import AttemptReview, BehaviorAnalysis, EventReview, ExamStats
from veritas_grpc.domain.exams import attempts_left, behavior_rules_locked
from veritas_grpc.services.views.analyses import analysis_view, review_view
from veritas_grpc.services.views.exams import analytics_view
from veritas_grpc.services.views.students import PerformanceView, performance_view

NOW = datetime(2026, 1, 1, tzinfo=UTC)
COUNTERS = [c.name for c in ExamStats.__table__.columns if c.name != "exam_id"]


def _stats(**figures):
    return ExamStats(exam_id=uuid.uuid4(), **{c: figures.get(c, 0) for c in COUNTERS})


def test_behaviour_rules_lock_with_the_first_attempt():
    assert (behavior_rules_locked(0), behavior_rules_locked(1)) == (False, True)


def test_attempts_left_never_go_below_zero():
    assert (attempts_left(3, 1), attempts_left(2, 5)) == (2, 0)


def test_an_exam_without_grades_has_no_mean_and_no_pass_rate():
    message = exam_convert.analytics(analytics_view(_stats(attempt_count=2, student_count=2)))
    assert (message.attempt_count, message.student_count) == (2, 2)
    for field in ("mean_points", "pass_rate", "mean_integrity_score"):
        assert not message.HasField(field)


def test_an_exams_means_and_pass_rate_come_from_its_sums():
    stats = _stats(
        graded_count=3,
        score_sum=Decimal("100.00"),
        passed_count=2,
        integrity_count=2,
        integrity_sum=Decimal("1.5001"),
        copy_count=1,
    )
    view = analytics_view(stats)
    assert (view.mean_points, view.mean_integrity_score) == (Decimal("33.33"), Decimal("0.7501"))
    message = exam_convert.analytics(view)
    assert (message.mean_points, message.pass_rate) == (33.33, 2 / 3)
    assert exam_convert.risk_counts(view.by_label).copy_count == 1


def test_a_student_without_figures_has_the_empty_summary():
    assert performance_view(None) == PerformanceView()
    assert exam_convert.performance(PerformanceView()) == resources_pb2.PerformanceSummary()


def _stored(event_id, event_type, penalty):
    return {
        "event_id": event_id,
        "event_type": event_type,
        "penalty": penalty,
        "corroborated": False,
    }


def test_a_stored_analysis_carries_its_penalty_per_type_largest_first():
    event = [str(uuid.uuid4()) for _ in range(3)]
    record = BehaviorAnalysis(
        id=uuid.uuid4(),
        attempt_id=uuid.uuid4(),
        version=1,
        source="RULES",
        integrity_score=Decimal("0.9"),
        dropout_label=None,
        llm_summary="",
        llm_reasoning="",
        recommendations=[],
        contributions=[
            _stored(event[0], "gaze_away", 1.0),
            _stored(event[1], "tab_switch", 1.5),
            _stored(event[2], "gaze_away", 1.0),
        ],
        model_name="veritas-rules",
        model_version="1",
        created_at=NOW,
    )
    message = analysis_convert.analysis(analysis_view(record))
    assert [(t.event_type, t.penalty) for t in message.penalty_by_type] == [
        ("gaze_away", 2.0),
        ("tab_switch", 1.5),
    ]
    assert [c.event_id for c in message.contributions] == event
    assert message.dropout_label == common_pb2.DROPOUT_LABEL_UNSPECIFIED


def test_a_review_says_either_an_events_decision_or_the_attempts_outcome():
    event_id = uuid.uuid4()
    on_event = EventReview(event_id=event_id, decision="DISMISSED", note="", reviewed_at=NOW)
    on_attempt = AttemptReview(outcome="VIOLATION", note="seen", reviewed_at=NOW)
    event_message = analysis_convert.review(review_view(on_event, None))
    attempt_message = analysis_convert.review(review_view(on_attempt, "Tess"))
    assert (event_message.event_id, event_message.outcome) == (str(event_id), 0)
    assert event_message.decision == common_pb2.REVIEW_DECISION_DISMISSED
    assert (attempt_message.event_id, attempt_message.decision) == ("", 0)
    assert attempt_message.outcome == common_pb2.REVIEW_OUTCOME_VIOLATION
    assert (attempt_message.reviewer_id, attempt_message.reviewer_name) == ("", "Tess")
