"""Behaviour analyses and reviews to protobuf messages, and requests to plain values."""

from __future__ import annotations

from veritas.v1 import analysis_pb2, common_pb2, resources_pb2

from veritas_grpc.api.convert import LABEL_NAMES, label, optional_float, set_time
from veritas_grpc.db.models import AttemptReview, BehaviorAnalysis, EventReview
from veritas_grpc.domain.scoring import Contribution
from veritas_grpc.domain.scoring import penalty_by_type as penalty_by_type_of
from veritas_grpc.services.analysis import ExternalAnalysis

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
    )


def contribution(item: Contribution) -> resources_pb2.ScoreContribution:
    return resources_pb2.ScoreContribution(
        event_id=str(item.event_id),
        event_type=item.event_type,
        penalty=item.penalty,
        corroborated=item.corroborated,
    )


def penalty_by_type(totals: dict[str, float]) -> list[resources_pb2.TypeContribution]:
    return [resources_pb2.TypeContribution(event_type=t, penalty=p) for t, p in totals.items()]


def analysis(record: BehaviorAnalysis) -> resources_pb2.BehaviorAnalysis:
    stored = record.contributions
    message = resources_pb2.BehaviorAnalysis(
        id=str(record.id),
        attempt_id=str(record.attempt_id),
        version=record.version,
        source=SOURCES[record.source],
        integrity_score=float(record.integrity_score),
        learning_momentum_index=optional_float(record.lmi_score),
        dropout_label=label(record.dropout_label),
        llm_summary=record.llm_summary,
        llm_reasoning=record.llm_reasoning,
        recommendations=record.recommendations,
        model=resources_pb2.AnalysisModel(name=record.model_name, version=record.model_version),
        contributions=[resources_pb2.ScoreContribution(**c) for c in stored],
        penalty_by_type=penalty_by_type(
            penalty_by_type_of((c["event_type"], c["penalty"]) for c in stored)
        ),
        request_id=record.request_id or "",
    )
    set_time(message, "create_time", record.created_at)
    return message


def review(record: EventReview | AttemptReview, reviewer_name: str | None) -> resources_pb2.Review:
    message = resources_pb2.Review(
        note=record.note,
        reviewer_id=str(record.reviewer_id or ""),
        reviewer_name=reviewer_name or "",
    )
    if isinstance(record, EventReview):
        message.event_id = str(record.event_id)
        message.decision = DECISION_VALUES[record.decision]
    else:
        message.outcome = OUTCOME_VALUES[record.outcome]
    set_time(message, "review_time", record.reviewed_at)
    return message
