"""Behaviour analyses and reviews to protobuf messages, and requests to plain values."""

from __future__ import annotations

from veritas.v1 import analysis_pb2, exams_pb2, teacher_pb2

from veritas_grpc.api.convert import LABEL_NAMES, label, optional_float, set_time
from veritas_grpc.db.models import AttemptReview, BehaviorAnalysis, EventReview
from veritas_grpc.domain.scoring import Contribution
from veritas_grpc.services.analysis import ExternalAnalysis

SOURCES = {
    "EXTERNAL": exams_pb2.ANALYSIS_SOURCE_EXTERNAL,
    "RULES": exams_pb2.ANALYSIS_SOURCE_RULES,
}
DECISIONS = {
    teacher_pb2.REVIEW_DECISION_CONFIRMED: "CONFIRMED",
    teacher_pb2.REVIEW_DECISION_DISMISSED: "DISMISSED",
}
OUTCOMES = {
    teacher_pb2.REVIEW_OUTCOME_CLEARED: "CLEARED",
    teacher_pb2.REVIEW_OUTCOME_VIOLATION: "VIOLATION",
}


def external(request: analysis_pb2.SaveBehaviorAnalysisRequest) -> ExternalAnalysis:
    return ExternalAnalysis(
        integrity_score=request.integrity_score,
        lmi_score=request.lmi_score if request.HasField("lmi_score") else None,
        dropout_label=LABEL_NAMES.get(request.dropout_label),
        llm_summary=request.llm_summary,
        llm_reasoning=request.llm_reasoning,
        recommendations=list(request.recommendations),
        model_name=request.model.name,
        model_version=request.model.version,
        request_id=request.request_id,
    )


def contribution(item: Contribution) -> analysis_pb2.ScoreContribution:
    return analysis_pb2.ScoreContribution(
        event_id=str(item.event_id),
        event_type=item.event_type,
        penalty=item.penalty,
        corroborated=item.corroborated,
    )


def analysis(record: BehaviorAnalysis) -> analysis_pb2.BehaviorAnalysis:
    message = analysis_pb2.BehaviorAnalysis(
        id=str(record.id),
        attempt_id=str(record.attempt_id),
        version=record.version,
        source=SOURCES[record.source],
        integrity_score=float(record.integrity_score),
        lmi_score=record.lmi_score,
        dropout_label=label(record.dropout_label),
        llm_summary=record.llm_summary,
        llm_reasoning=record.llm_reasoning,
        recommendations=record.recommendations,
        model=analysis_pb2.AnalysisModel(name=record.model_name, version=record.model_version),
        contributions=[analysis_pb2.ScoreContribution(**c) for c in record.contributions],
        request_id=record.request_id or "",
    )
    set_time(message, "create_time", record.created_at)
    return message


def analysis_summary(record: BehaviorAnalysis) -> teacher_pb2.BehaviorAnalysisSummary:
    by_type: dict[str, float] = {}
    for item in record.contributions:
        by_type[item["event_type"]] = by_type.get(item["event_type"], 0.0) + item["penalty"]
    message = teacher_pb2.BehaviorAnalysisSummary(
        integrity_score=float(record.integrity_score),
        dropout_label=label(record.dropout_label),
        llm_summary=record.llm_summary,
        recommendations=record.recommendations,
        llm_reasoning=record.llm_reasoning,
        source=SOURCES[record.source],
        version=record.version,
        lmi_score=optional_float(record.lmi_score),
        penalty_by_type=by_type,
    )
    set_time(message, "create_time", record.created_at)
    return message


def review(record: EventReview | AttemptReview, reviewer_name: str | None) -> teacher_pb2.Review:
    message = teacher_pb2.Review(
        note=record.note,
        reviewer_id=str(record.reviewer_id or ""),
        reviewer_name=reviewer_name or "",
    )
    if isinstance(record, EventReview):
        message.event_id = str(record.event_id)
        message.decision = {v: k for k, v in DECISIONS.items()}[record.decision]
    else:
        message.outcome = {v: k for k, v in OUTCOMES.items()}[record.outcome]
    set_time(message, "review_time", record.reviewed_at)
    return message
