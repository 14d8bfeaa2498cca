"""The built-in rules, fed as AnalyzeAttempt feeds them (services/analysis.py): the
exam's behaviour-rule weights, events a reviewer dismissed marked so, the event types
the student's allowances exempt (the evidence's exempt_event_types), TECHNICAL events
never counting (domain/scoring.py leaves them out). On top of the integrity score, a
dropout label picked by the rule of `dropout_label` below.

Memory: each event is kept as a small ScoredEvent, not as its message (the payloads
go), because the corroboration boost needs every event's time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC

from veritas.v1 import analysis_pb2, common_pb2, resources_pb2

from veritas_grpc.domain.scoring import Score, ScoredEvent, score
from veritas_grpc.scorer.analysis import Analysis

MODEL_NAME = "veritas-reference-scorer"
MODEL_VERSION = "rules-1"
# The server's default VERITAS_FLAG_INTEGRITY_THRESHOLD: below it an attempt is flagged,
# and the behaviour is what the label should name.
COPY_BELOW_INTEGRITY = 0.5
# A student whose graded attempts average below this is struggling with the material.
INCAPABLE_BELOW_MEAN_PERCENT = 50.0
REASONING_LINES = 50
RECOMMENDATIONS = {
    common_pb2.DROPOUT_LABEL_COPY: (
        "Keep the exam window in focus and your face in view for the whole exam.",
        "Close other tabs and applications before you start.",
    ),
    common_pb2.DROPOUT_LABEL_INCAPABLE: (
        "Go over the exam's topics again and ask your teacher which ones to start with.",
    ),
    common_pb2.DROPOUT_LABEL_NO_INTEREST: (
        "Talk to your teacher about what would help you finish the next exam.",
    ),
}
_SEVERITY = {
    common_pb2.SEVERITY_INFO: "INFO",
    common_pb2.SEVERITY_WARNING: "WARNING",
    common_pb2.SEVERITY_CRITICAL: "CRITICAL",
}
_CATEGORY = {
    common_pb2.EVENT_CATEGORY_INTEGRITY: "INTEGRITY",
    common_pb2.EVENT_CATEGORY_TECHNICAL: "TECHNICAL",
}


def scored_event(item: analysis_pb2.EvidenceEvent) -> ScoredEvent:
    event = item.event
    return ScoredEvent(
        event_id=uuid.UUID(event.event_id),
        event_type=event.event_type,
        # An unknown category is not the student's behaviour: it never counts.
        category=_CATEGORY.get(event.category, "TECHNICAL"),
        # Stored events always have one (as sent, or the rule's default).
        severity=_SEVERITY.get(event.severity, "INFO"),
        is_anomaly=event.is_anomaly,
        occurred_at=event.occur_time.ToDatetime(tzinfo=UTC),
        dismissed=item.review_decision == common_pb2.REVIEW_DECISION_DISMISSED,
    )


def rule_weights(evidence: analysis_pb2.AttemptEvidence) -> dict[str, float]:
    return {rule.event_type: rule.weight for rule in evidence.behavior_rules}


def dropout_label(
    integrity: float, attempt: resources_pb2.Attempt, student: resources_pb2.PerformanceSummary
) -> common_pb2.DropoutLabel.ValueType:
    """The first that holds, in this order (the behaviour first, then the attempt's
    outcome, then the student's record):

    COPY         integrity below 0.5 (where the server flags an attempt)
    NO_INTEREST  the student abandoned the attempt
    INCAPABLE    the attempt was graded and failed; or, ungraded, the student's graded
                 attempts average below 50 %
    SAFE         otherwise
    """
    if integrity < COPY_BELOW_INTEGRITY:
        return common_pb2.DROPOUT_LABEL_COPY
    if attempt.status == common_pb2.ATTEMPT_STATUS_ABANDONED:
        return common_pb2.DROPOUT_LABEL_NO_INTEREST
    if attempt.HasField("passed"):
        if not attempt.passed:
            return common_pb2.DROPOUT_LABEL_INCAPABLE
    elif (
        student.HasField("mean_score_percent")
        and student.mean_score_percent < INCAPABLE_BELOW_MEAN_PERCENT
    ):
        return common_pb2.DROPOUT_LABEL_INCAPABLE
    return common_pb2.DROPOUT_LABEL_SAFE


def _summary(result: Score, counted: int, dismissed: int, technical: int, exempt: int) -> str:
    moved = sum(1 for c in result.contributions if not c.exempt)
    parts = [
        f"Rule-based analysis: integrity {result.integrity} "
        f"(penalty {result.penalty:g} from {moved} of {counted} behaviour events)."
    ]
    by_type = result.by_type()
    if by_type:
        top = ", ".join(f"{kind} {penalty:g}" for kind, penalty in list(by_type.items())[:3])
        parts.append(f"Largest penalties: {top}.")
    if dismissed:
        parts.append(f"{dismissed} events dismissed by a reviewer were not counted.")
    if exempt:
        parts.append(f"{exempt} events of types exempt by an allowance were not counted.")
    if technical:
        parts.append(f"{technical} technical events never count.")
    return " ".join(parts)


def _reasoning(result: Score) -> str:
    lines = [
        f"{c.event_id} {c.event_type} penalty {c.penalty:g}"
        + (" (corroborated: x1.5)" if c.corroborated else "")
        + (" (exempt by allowance)" if c.exempt else "")
        for c in result.contributions[:REASONING_LINES]
    ]
    hidden = len(result.contributions) - REASONING_LINES
    if hidden > 0:
        lines.append(f"... and {hidden} smaller contributions")
    return "\n".join(lines) or "No event lowered the score."


class RulesScorer:
    """Scores with domain/scoring.py and labels with `dropout_label`."""

    async def analyse(
        self,
        evidence: analysis_pb2.AttemptEvidence,
        events: AsyncIterator[analysis_pb2.EvidenceEvent],
    ) -> Analysis:
        scored = [scored_event(item) async for item in events]
        exempt_types = frozenset(evidence.exempt_event_types)
        result = score(scored, rule_weights(evidence), exempt_types)
        integrity = float(result.integrity)
        label = dropout_label(integrity, evidence.attempt, evidence.student_performance)
        behaviour = [e for e in scored if e.category == "INTEGRITY"]
        technical = len(scored) - len(behaviour)
        dismissed = sum(1 for e in behaviour if e.dismissed)
        exempt = sum(1 for e in behaviour if not e.dismissed and e.event_type in exempt_types)
        counted = len(behaviour) - dismissed - exempt
        return Analysis(
            integrity_score=integrity,
            dropout_label=label,
            llm_summary=_summary(result, counted, dismissed, technical, exempt),
            llm_reasoning=_reasoning(result),
            recommendations=RECOMMENDATIONS.get(label, ()),
            model_name=MODEL_NAME,
            model_version=MODEL_VERSION,
            event_count=len(scored),
        )
