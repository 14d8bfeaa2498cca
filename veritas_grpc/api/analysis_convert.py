"""Behaviour analyses and reviews to protobuf messages, and requests to plain values."""

from __future__ import annotations

from veritas.v1 import analysis_pb2, common_pb2, resources_pb2

from veritas_grpc.api.convert import LABEL_NAMES, label, set_time
from veritas_grpc.domain.scoring import Contribution
from veritas_grpc.services.analysis import ExternalAnalysis
from veritas_grpc.services.views.analyses import (
    AnalysisView,
    FlaggedExamView,
    IntegrityBandCounts,
    ReviewView,
)

SOURCES = {
    "EXTERNAL": common_pb2.ANALYSIS_SOURCE_EXTERNAL,
    "RULES": common_pb2.ANALYSIS_SOURCE_RULES,
}
DECISIONS = {
    common_pb2.REVIEW_DECISION_CONFIRMED: "CONFIRMED",
    common_pb2.REVIEW_DECISION_DISMISSED: "DISMISSED",
}
OUTCOMES = {
    common_pb2.REVIEW_OUTCOME_CLEARED: "CLEARED",
    common_pb2.REVIEW_OUTCOME_VIOLATION: "VIOLATION",
}
DECISION_VALUES = {name: value for value, name in DECISIONS.items()}
OUTCOME_VALUES = {name: value for value, name in OUTCOMES.items()}


def external(request: analysis_pb2.CreateBehaviorAnalysisRequest) -> ExternalAnalysis:
    return ExternalAnalysis(
        integrity_score=request.integrity_score,
        lmi_score=(
            request.learning_momentum_index if request.HasField("learning_momentum_index") else None
        ),
        dropout_label=LABEL_NAMES.get(request.dropout_label),
        llm_summary=request.llm_summary,
        llm_reasoning=request.llm_reasoning,
        recommendations=list(request.recommendations),
        model_name=request.model.name,
        model_version=request.model.version,
        request_id=request.request_id,
        lease_token=request.lease_token,
    )


def contribution(item: Contribution) -> resources_pb2.ScoreContribution:
    return resources_pb2.ScoreContribution(
        event_id=str(item.event_id),
        event_type=item.event_type,
        penalty=item.penalty,
        corroborated=item.corroborated,
        exempt_by_allowance=item.exempt,
    )


def penalty_by_type(totals: dict[str, float]) -> list[resources_pb2.TypeContribution]:
    return [resources_pb2.TypeContribution(event_type=t, penalty=p) for t, p in totals.items()]


def analysis(view: AnalysisView) -> resources_pb2.BehaviorAnalysis:
    message = resources_pb2.BehaviorAnalysis(
        id=str(view.id),
        attempt_id=str(view.attempt_id),
        version=view.version,
        source=SOURCES[view.source],
        integrity_score=float(view.integrity_score),
        learning_momentum_index=view.learning_momentum_index,
        dropout_label=label(view.dropout_label),
        llm_summary=view.llm_summary,
        llm_reasoning=view.llm_reasoning,
        recommendations=view.recommendations,
        model=resources_pb2.AnalysisModel(name=view.model_name, version=view.model_version),
        contributions=[contribution(c) for c in view.contributions],
        penalty_by_type=penalty_by_type(view.penalty_by_type),
        request_id=view.request_id,
    )
    set_time(message, "create_time", view.create_time)
    return message


def review(view: ReviewView) -> resources_pb2.Review:
    message = resources_pb2.Review(
        event_id=str(view.event_id) if view.event_id else "",
        decision=DECISION_VALUES.get(view.decision or "", 0),
        outcome=OUTCOME_VALUES.get(view.outcome or "", 0),
        note=view.note,
        reviewer_id=str(view.reviewer_id) if view.reviewer_id else "",
        reviewer_name=view.reviewer_name,
    )
    set_time(message, "review_time", view.review_time)
    return message


def integrity_bands(counts: IntegrityBandCounts) -> analysis_pb2.IntegrityBands:
    return analysis_pb2.IntegrityBands(
        good_count=counts.good,
        watch_count=counts.watch,
        at_risk_count=counts.at_risk,
        unassessed_count=counts.unassessed,
    )


def flagged_exam(view: FlaggedExamView) -> analysis_pb2.FlaggedExam:
    return analysis_pb2.FlaggedExam(
        exam_id=str(view.exam_id),
        title=view.title,
        flagged_count=view.flagged_count,
        attempt_count=view.attempt_count,
    )
