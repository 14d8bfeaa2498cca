"""Behaviour analyses: the scoring service's, the built-in scorer's, reviewers' decisions
that move them, the repair recomputation of a student's figures, and the risk summary."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from veritas_grpc.db.models import AnalysisJob, AttemptReview, BehaviorAnalysis, ExamAttempt
from veritas_grpc.db.models.joined import AttemptInContext
from veritas_grpc.domain.analysis_jobs import LEASE_NOT_HELD, JobReason
from veritas_grpc.domain.errors import FailedPrecondition, InvalidArgument, NotFound, Validator
from veritas_grpc.domain.exams import AccessLevel, AttemptStatus, DropoutLabel
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.domain.scoring import Score, score
from veritas_grpc.services import auditing
from veritas_grpc.services.analysis_queue import complete_lease, held_lease
from veritas_grpc.services.attempts import facts, reassess
from veritas_grpc.services.exams import behavior_rules, lock_attempt
from veritas_grpc.services.exemptions import exempt_types
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from veritas_grpc.services.views.analyses import (
    AnalysisView,
    FlaggedExamView,
    IntegrityBandCounts,
    RiskSummary,
    ScoreView,
    analysis_view,
    score_view,
)
from veritas_grpc.services.views.attempts import AttemptView, attempt_view
from veritas_grpc.services.views.exams import LabelCounts
from veritas_grpc.services.views.students import PerformanceView, performance_view

Clock = Callable[[], datetime]
MAX_RECOMMENDATIONS = 20


@dataclass(frozen=True)
class ExternalAnalysis:
    """What the scoring service posts (CreateBehaviorAnalysis)."""

    integrity_score: float
    lmi_score: float | None
    dropout_label: DropoutLabel | None
    llm_summary: str
    llm_reasoning: str
    recommendations: Sequence[str]
    model_name: str
    model_version: str
    request_id: str
    lease_token: str = ""  # a lease on the attempt's job: saving completes it


@dataclass(frozen=True)
class Saved:
    analysis: AnalysisView
    replayed: bool  # the request id's earlier analysis, not a new one


@dataclass(frozen=True)
class RuleResult:
    """The built-in scorer's score, whether it was saved as the current analysis, and
    the current analysis (the saved one, or the scoring service's that outranks it)."""

    score: ScoreView
    saved: bool
    current: AnalysisView | None


@dataclass(frozen=True)
class _Rescored:
    score: Score
    saved: bool
    current: BehaviorAnalysis | None


def _validate(external: ExternalAnalysis) -> None:
    check = Validator()
    integrity = external.integrity_score
    check.check(
        not math.isnan(integrity) and 0 <= integrity <= 1,
        "integrity_score",
        "must be between 0 and 1",
    )
    if external.lmi_score is not None:
        check.check(
            math.isfinite(external.lmi_score), "learning_momentum_index", "must be a finite number"
        )
    check.check(external.dropout_label is not None, "dropout_label", "is required")
    check.check(len(external.llm_summary) <= 20_000, "llm_summary", "at most 20000 characters")
    check.check(
        len(external.llm_reasoning) <= 100_000, "llm_reasoning", "at most 100000 characters"
    )
    check.check(
        len(external.recommendations) <= MAX_RECOMMENDATIONS,
        "recommendations",
        f"at most {MAX_RECOMMENDATIONS}",
    )
    for index, text in enumerate(external.recommendations):
        check.check(len(text) <= 1000, f"recommendations[{index}]", "at most 1000 characters")
    check.check(len(external.model_name) <= 100, "model.name", "at most 100 characters")
    check.check(len(external.model_version) <= 50, "model.version", "at most 50 characters")
    check.check(len(external.request_id) <= 64, "request_id", "at most 64 characters")
    check.raise_if_any()


def _contributions_json(result: Score) -> list[dict[str, object]]:
    return [
        {
            "event_id": str(c.event_id),
            "event_type": c.event_type,
            "penalty": c.penalty,
            "corroborated": c.corroborated,
            "exempt": c.exempt,
        }
        for c in result.contributions
    ]


class AnalysisService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        threshold: Decimal,
        reads: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._threshold = threshold
        # Where the risk summary reads (the replica: READ_SOURCE_REPLICA).
        self._reads = reads or uow_factory

    # The scoring service ------------------------------------------------------------

    def save(self, actor: Principal, attempt_id: str, external: ExternalAnalysis) -> Saved:
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        _validate(external)
        with self._uow_factory() as uow:
            found = lock_attempt(uow, actor, attempt_uuid, None)
            if external.request_id:
                # Before the lease: a save whose answer was lost is replayed, lease or not.
                earlier = uow.analyses.by_request(attempt_uuid, external.request_id)
                if earlier is not None:
                    return Saved(analysis_view(earlier), replayed=True)
            now = self._clock()
            lease = self._lease(uow, actor, attempt_uuid, external.lease_token, now)
            assert external.dropout_label is not None
            analysis = uow.analyses.replace_current(
                BehaviorAnalysis(
                    attempt_id=attempt_uuid,
                    source="EXTERNAL",
                    integrity_score=Decimal(str(round(external.integrity_score, 4))),
                    lmi_score=external.lmi_score,
                    dropout_label=external.dropout_label.value,
                    llm_summary=external.llm_summary,
                    llm_reasoning=external.llm_reasoning,
                    recommendations=list(external.recommendations),
                    contributions=[],
                    model_name=external.model_name,
                    model_version=external.model_version,
                    request_id=external.request_id or None,
                    created_by=actor.user_id,
                )
            )
            self._apply(uow, found.attempt, analysis)
            if lease is not None:
                complete_lease(uow, lease, analysis.id, now)
            auditing.record(
                uow,
                "analysis.save",
                "success",
                actor=actor,
                resource_type="attempt",
                resource_id=attempt_uuid,
                details={
                    "version": analysis.version,
                    "label": analysis.dropout_label,
                    "job_id": str(lease.id) if lease is not None else "",
                },
            )
            uow.commit()
            return Saved(analysis_view(analysis), replayed=False)

    def _lease(
        self, uow: UnitOfWork, actor: Principal, attempt_id: uuid.UUID, token: str, now: datetime
    ) -> AnalysisJob | None:
        """The job the save completes: none without a token; a lease the actor holds on
        this attempt's job, or FailedPrecondition (nothing is saved)."""
        if not token:
            return None
        job = held_lease(uow, actor, token, now)
        if job.attempt_id != attempt_id:
            raise FailedPrecondition(LEASE_NOT_HELD)
        return job

    # The built-in scorer --------------------------------------------------------------

    def analyze(self, actor: Principal, attempt_id: str) -> RuleResult:
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        with self._uow_factory() as uow:
            level = AccessLevel.MANAGE if actor.role is Role.TEACHER else None
            found = lock_attempt(uow, actor, attempt_uuid, level)
            result = self._rescore(uow, found, actor)
            auditing.record(
                uow,
                "analysis.rules",
                "success",
                actor=actor,
                resource_type="attempt",
                resource_id=attempt_uuid,
                details={"integrity": str(result.score.integrity), "saved": result.saved},
            )
            uow.commit()
        current = analysis_view(result.current) if result.current is not None else None
        return RuleResult(score_view(result.score), result.saved, current)

    def _rescore(self, uow: UnitOfWork, found: AttemptInContext, actor: Principal) -> _Rescored:
        return rescore_by_rules(uow, found, actor, self._threshold, self._clock())

    def _apply(self, uow: UnitOfWork, attempt: ExamAttempt, analysis: BehaviorAnalysis) -> None:
        apply_analysis(uow, attempt, analysis, self._threshold, self._clock())

    # Reviews ------------------------------------------------------------------------

    def review_event(
        self, actor: Principal, attempt_id: str, event_id: str, decision: str | None, note: str
    ) -> AttemptView:
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        event_uuid = parse_id(event_id, "event_id")
        if decision not in ("CONFIRMED", "DISMISSED"):
            raise InvalidArgument.of("decision", "must be CONFIRMED or DISMISSED")
        _check_note(note)
        with self._uow_factory() as uow:
            found = self._reviewable(uow, actor, attempt_uuid)
            if not uow.analyses.event_exists(attempt_uuid, event_uuid):
                raise NotFound("event not found")
            now = self._clock()
            uow.analyses.review_event(attempt_uuid, event_uuid, decision, note, actor.user_id, now)
            attempt = found.attempt
            before = facts(attempt)
            attempt.confirmed_events = uow.analyses.confirmed_count(attempt_uuid)
            reassess(uow, attempt, before, self._threshold, now)
            # The score follows the decision at once (dismissed events stop counting), and
            # the scoring service is asked to look again.
            self._rescore(uow, found, actor)
            if attempt.status != AttemptStatus.IN_PROGRESS:
                uow.analysis_jobs.request([attempt_uuid], JobReason.EVENT_REVIEWED, now)
            auditing.record(
                uow,
                "review.event",
                "success",
                actor=actor,
                resource_type="attempt",
                resource_id=attempt_uuid,
                details={"event_id": str(event_uuid), "decision": decision, "note": note},
            )
            uow.commit()
            return attempt_view(found)

    def review_attempt(
        self, actor: Principal, attempt_id: str, outcome: str | None, note: str
    ) -> AttemptView:
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        if outcome not in ("CLEARED", "VIOLATION"):
            raise InvalidArgument.of("outcome", "must be CLEARED or VIOLATION")
        _check_note(note)
        with self._uow_factory() as uow:
            found = self._reviewable(uow, actor, attempt_uuid)
            now = self._clock()
            uow.analyses.review_attempt(
                AttemptReview(
                    attempt_id=attempt_uuid,
                    outcome=outcome,
                    note=note,
                    reviewer_id=actor.user_id,
                    reviewed_at=now,
                )
            )
            attempt = found.attempt
            before = facts(attempt)
            attempt.review_outcome = outcome
            reassess(uow, attempt, before, self._threshold, now)
            auditing.record(
                uow,
                "review.attempt",
                "success",
                actor=actor,
                resource_type="attempt",
                resource_id=attempt_uuid,
                details={"outcome": outcome, "note": note},
            )
            uow.commit()
            return attempt_view(found)

    def _reviewable(
        self, uow: UnitOfWork, actor: Principal, attempt_id: uuid.UUID
    ) -> AttemptInContext:
        return lock_attempt(uow, actor, attempt_id, AccessLevel.MANAGE)

    # Repairs and summaries ------------------------------------------------------------

    def recompute_student(self, actor: Principal, student_id: str) -> PerformanceView:
        student_uuid = parse_id(student_id, "student_id")
        with self._uow_factory() as uow:
            if uow.student_stats.dashboard(student_uuid) is None:
                raise NotFound("student not found")
            uow.student_stats.recompute(student_uuid)
            auditing.record(
                uow,
                "metrics.recompute",
                "success",
                actor=actor,
                resource_type="user",
                resource_id=student_uuid,
            )
            uow.commit()
            found = uow.student_stats.dashboard(student_uuid)
            assert found is not None and found[2] is not None
            return performance_view(found[2])

    def high_risk_summary(self, actor: Principal) -> RiskSummary:
        now = self._clock()
        with self._reads() as uow:
            totals = uow.exams.totals()
            most_flagged = uow.exams.most_flagged(10)
            hour = uow.events.critical_since(now - timedelta(hours=1))
            day = uow.events.critical_since(now - timedelta(days=1))
        return RiskSummary(
            by_label=LabelCounts(
                safe=totals["safe_count"],
                incapable=totals["incapable_count"],
                copy=totals["copy_count"],
                no_interest=totals["no_interest_count"],
            ),
            by_integrity=IntegrityBandCounts(
                good=totals["integrity_good_count"],
                watch=totals["integrity_watch_count"],
                at_risk=totals["integrity_at_risk_count"],
                unassessed=totals["attempt_count"] - totals["integrity_count"],
            ),
            most_flagged=tuple(FlaggedExamView(*row) for row in most_flagged),
            critical_last_hour=hour,
            critical_last_day=day,
            critical_per_hour_last_day=day / 24,
        )


def rescore_by_rules(
    uow: UnitOfWork, found: AttemptInContext, actor: Principal, threshold: Decimal, now: datetime
) -> _Rescored:
    """Score the (locked) attempt's events with the built-in rules; save the result
    unless an external analysis is current (the scoring service's judgement wins over
    the built-in rules). Also called where the evidence's reading changes (a grant of
    an event exemption)."""
    attempt = found.attempt
    dismissed = uow.analyses.dismissed(attempt.id)
    events = [
        replace(event, dismissed=True) if event.event_id in dismissed else event
        for event in uow.events.for_scoring(attempt.id)
    ]
    weights = {rule.event_type: rule.weight for rule in behavior_rules(found.exam)}
    # The attempt's exemptions: one revoked after it started still applies to it.
    result = score(events, weights, exempt_types(uow, attempt.id))
    current = uow.analyses.current(attempt.id)
    if current is not None and current.source == "EXTERNAL":
        return _Rescored(result, saved=False, current=current)
    analysis = uow.analyses.replace_current(
        BehaviorAnalysis(
            attempt_id=attempt.id,
            source="RULES",
            integrity_score=result.integrity,
            dropout_label=attempt.dropout_label,
            recommendations=[],
            contributions=_contributions_json(result),
            model_name="veritas-rules",
            model_version="1",
            created_by=actor.user_id,
        )
    )
    apply_analysis(uow, attempt, analysis, threshold, now)
    return _Rescored(result, saved=True, current=analysis)


def apply_analysis(
    uow: UnitOfWork,
    attempt: ExamAttempt,
    analysis: BehaviorAnalysis,
    threshold: Decimal,
    now: datetime,
) -> None:
    """The current analysis sets the attempt's integrity, label and flag, and the
    student's LMI; the figures follow in the same transaction."""
    before = facts(attempt)
    attempt.integrity_score = analysis.integrity_score
    attempt.dropout_label = analysis.dropout_label
    reassess(uow, attempt, before, threshold, now)
    if attempt.is_practice:
        return  # a practice attempt moves none of the student's figures
    if analysis.dropout_label:
        uow.student_stats.set_risk_label(attempt.student_id, analysis.dropout_label)
    if analysis.lmi_score is not None:
        uow.student_stats.set_lmi(attempt.student_id, analysis.lmi_score)


def _check_note(note: str) -> None:
    if len(note) > 2000:
        raise InvalidArgument.of("note", "at most 2000 characters")
