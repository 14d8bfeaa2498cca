"""Rules about exams and attempts that need nothing else: statuses, grading arithmetic,
score bands, and what one attempt contributes to the running figures."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
TEN_THOUSANDTH = Decimal("0.0001")
# An attempt below this integrity score counts as high risk.
HIGH_RISK_INTEGRITY = Decimal("0.5")
GOOD_INTEGRITY = Decimal("0.8")


class ExamStatus(enum.StrEnum):
    DRAFT = "DRAFT"
    PUBLISHED = "PUBLISHED"
    ARCHIVED = "ARCHIVED"


class AttemptStatus(enum.StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    SUBMITTED = "SUBMITTED"
    ABANDONED = "ABANDONED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def gradable(self) -> bool:
        return self in (AttemptStatus.SUBMITTED, AttemptStatus.TIMED_OUT)


class AccessLevel(enum.IntEnum):
    """Ordered: MANAGE includes VIEW."""

    VIEW = 1
    MANAGE = 2


class DropoutLabel(enum.StrEnum):
    SAFE = "SAFE"
    INCAPABLE = "INCAPABLE"
    COPY = "COPY"
    NO_INTEREST = "NO_INTEREST"


class IntegrityStatus(enum.StrEnum):
    GOOD = "GOOD"
    WATCH = "WATCH"
    AT_RISK = "AT_RISK"


class Trend(enum.StrEnum):
    RISING = "RISING"
    STEADY = "STEADY"
    FALLING = "FALLING"


@dataclass(frozen=True)
class BehaviorRule:
    """How an exam treats one event type: flagged or not, its weight in the integrity
    score, and the severity of an event sent without one."""

    event_type: str
    flagged: bool
    weight: float
    default_severity: str | None  # INFO | WARNING | CRITICAL, None when unspecified

    def as_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "flagged": self.flagged,
            "weight": self.weight,
            "default_severity": self.default_severity,
        }


def rules_in(settings: Mapping[str, Any]) -> list[BehaviorRule]:
    """The behaviour rules stored in an exam's settings."""
    return [BehaviorRule(**rule) for rule in settings.get("behavior_rules", [])]


def behavior_rules_locked(attempt_count: int) -> bool:
    """Once an attempt exists, its events are weighed by the exam's rules: changing them
    would score attempts at one exam by different rules."""
    return attempt_count > 0


def attempts_left(max_attempts: int, used: int) -> int:
    return max(0, max_attempts - used)


def to_cents(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def percentage(score: Decimal, max_score: Decimal) -> Decimal:
    return (score * 100 / max_score).quantize(CENT, rounding=ROUND_HALF_UP)


def integrity_status(score: Decimal | None) -> IntegrityStatus | None:
    if score is None:
        return None
    if score >= GOOD_INTEGRITY:
        return IntegrityStatus.GOOD
    if score >= HIGH_RISK_INTEGRITY:
        return IntegrityStatus.WATCH
    return IntegrityStatus.AT_RISK


def mean(total: Decimal, count: int, places: Decimal) -> Decimal | None:
    return None if count == 0 else (total / count).quantize(places, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class AttemptFacts:
    """What of an attempt the running figures depend on."""

    status: AttemptStatus
    score: Decimal | None = None
    percentage: Decimal | None = None
    passed: bool | None = None
    integrity: Decimal | None = None
    label: DropoutLabel | None = None
    flagged: bool = False

    @property
    def high_risk(self) -> bool:
        risky_label = self.label in (DropoutLabel.COPY, DropoutLabel.NO_INTEREST)
        return risky_label or (self.integrity is not None and self.integrity < HIGH_RISK_INTEGRITY)


Figures = dict[str, Decimal | int]


def contribution(facts: AttemptFacts | None) -> Figures:
    """What one attempt adds to the running figures (nothing for an attempt not yet made).

    The exam's figures and the student's figures are sums of these over attempts, so a
    change to an attempt changes them by contribution(after) - contribution(before):
    updating them step by step gives exactly what recomputing them would.
    """
    counts: Figures = {}
    if facts is None:
        return counts
    counts["attempt_count"] = 1
    counts["finished_count"] = int(facts.status.gradable)
    if facts.score is not None:
        counts["graded_count"] = 1
        counts["score_sum"] = facts.score
        counts["percentage_sum"] = facts.percentage or Decimal(0)
        counts["passed_count"] = int(bool(facts.passed))
    if facts.integrity is not None:
        counts["integrity_count"] = 1
        counts["integrity_sum"] = facts.integrity
        band = integrity_status(facts.integrity)
        assert band is not None
        counts[f"integrity_{band.value.lower()}_count"] = 1
    counts["flagged_count"] = int(facts.flagged)
    counts["high_risk_count"] = int(facts.high_risk)
    if facts.label is not None:
        counts[f"{facts.label.value.lower()}_count"] = 1
    return counts


def change(before: AttemptFacts | None, after: AttemptFacts) -> Figures:
    """contribution(after) - contribution(before), without the zero entries."""
    old, new = contribution(before), contribution(after)
    delta = {key: new.get(key, 0) - old.get(key, 0) for key in old.keys() | new.keys()}
    return {key: value for key, value in delta.items() if value != 0}


def should_flag(
    integrity: Decimal | None,
    label: DropoutLabel | None,
    review_outcome: str | None,
    confirmed_events: int,
    threshold: Decimal,
) -> bool:
    """A reviewer's outcome on the attempt decides; without one, a confirmed event, a
    COPY label or an integrity score under the threshold flags it."""
    if review_outcome == "CLEARED":
        return False
    if review_outcome == "VIOLATION" or confirmed_events > 0:
        return True
    return label is DropoutLabel.COPY or (integrity is not None and integrity < threshold)
