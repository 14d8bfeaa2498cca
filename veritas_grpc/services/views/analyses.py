"""Behaviour analyses, fresh scores, reviewers' decisions and the risk summary."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from veritas_grpc.db.models import AttemptReview, BehaviorAnalysis, EventReview
from veritas_grpc.domain.exams import DropoutLabel
from veritas_grpc.domain.scoring import Contribution, Score, penalty_by_type
from veritas_grpc.services.views.exams import LabelCounts


@dataclass(frozen=True)
class ScoreView:
    """A score with the events that moved it, largest first, and its penalty per type."""

    integrity_score: Decimal
    penalty: float
    contributions: tuple[Contribution, ...]
    penalty_by_type: dict[str, float]  # largest first


def score_view(score: Score) -> ScoreView:
    return ScoreView(score.integrity, score.penalty, tuple(score.contributions), score.by_type())


@dataclass(frozen=True)
class AnalysisView:
    id: uuid.UUID
    attempt_id: uuid.UUID
    version: int
    source: str  # EXTERNAL (the scoring service) | RULES (the built-in scorer)
    integrity_score: Decimal
    learning_momentum_index: float | None
    dropout_label: DropoutLabel | None
    llm_summary: str
    llm_reasoning: str
    recommendations: tuple[str, ...]
    model_name: str
    model_version: str
    contributions: tuple[Contribution, ...]
    penalty_by_type: dict[str, float]  # largest first
    request_id: str
    create_time: datetime


def _contribution(stored: Mapping[str, Any]) -> Contribution:
    return Contribution(
        event_id=uuid.UUID(stored["event_id"]),
        event_type=stored["event_type"],
        penalty=stored["penalty"],
        corroborated=stored["corroborated"],
        # Saved before exemptions existed: nothing was exempt.
        exempt=stored.get("exempt", False),
    )


def analysis_view(record: BehaviorAnalysis) -> AnalysisView:
    contributions = tuple(_contribution(c) for c in record.contributions)
    return AnalysisView(
        id=record.id,
        attempt_id=record.attempt_id,
        version=record.version,
        source=record.source,
        integrity_score=record.integrity_score,
        learning_momentum_index=record.lmi_score,
        dropout_label=DropoutLabel(record.dropout_label) if record.dropout_label else None,
        llm_summary=record.llm_summary,
        llm_reasoning=record.llm_reasoning,
        recommendations=tuple(record.recommendations),
        model_name=record.model_name,
        model_version=record.model_version,
        contributions=contributions,
        penalty_by_type=penalty_by_type(contributions),
        request_id=record.request_id or "",
        create_time=record.created_at,
    )


@dataclass(frozen=True)
class ReviewView:
    """A reviewer's decision on one event (event_id and decision), or their outcome on
    the whole attempt (outcome)."""

    event_id: uuid.UUID | None
    decision: str | None  # CONFIRMED | DISMISSED
    outcome: str | None  # CLEARED | VIOLATION
    note: str
    reviewer_id: uuid.UUID | None
    reviewer_name: str
    review_time: datetime


def review_view(record: EventReview | AttemptReview, reviewer_name: str | None) -> ReviewView:
    if isinstance(record, EventReview):
        event_id, decision, outcome = record.event_id, record.decision, None
    else:
        event_id, decision, outcome = None, None, record.outcome
    return ReviewView(
        event_id=event_id,
        decision=decision,
        outcome=outcome,
        note=record.note,
        reviewer_id=record.reviewer_id,
        reviewer_name=reviewer_name or "",
        review_time=record.reviewed_at,
    )


def review_views(
    rows: Iterable[tuple[EventReview | AttemptReview, str | None]],
) -> tuple[ReviewView, ...]:
    return tuple(review_view(record, name) for record, name in rows)


@dataclass(frozen=True)
class IntegrityBandCounts:
    """Attempts per integrity band, and those not assessed yet."""

    good: int
    watch: int
    at_risk: int
    unassessed: int


@dataclass(frozen=True)
class FlaggedExamView:
    exam_id: uuid.UUID
    title: str
    flagged_count: int
    attempt_count: int


@dataclass(frozen=True)
class RiskSummary:
    by_label: LabelCounts
    by_integrity: IntegrityBandCounts
    most_flagged: tuple[FlaggedExamView, ...]
    critical_last_hour: int
    critical_last_day: int
    critical_per_hour_last_day: float
