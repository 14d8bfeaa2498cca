"""The built-in, explainable integrity scorer. Deterministic: the same events and rules
always give the same score and the same contributions.

    weight(e)   = the exam's rule weight for e's type; without a rule 1 if e is an
                  anomaly, else 0
    severity(e) = 0.5 INFO, 1 WARNING, 2 CRITICAL
    counted     = the INTEGRITY events that no reviewer dismissed, of a type the
                  student's allowances do not exempt
    boost(e)    = 1.5 when e is corroborated: a counted gaze event (eye_movement,
                  gaze_away, face_not_detected) and a counted focus event (tab_switch,
                  window_blur, copy_paste) within 5 seconds of each other corroborate
                  each other; else 1
    penalty     = sum over counted events of weight(e) * severity(e) * boost(e)
    integrity   = exp(-penalty / 25), rounded to 4 decimals

TECHNICAL events (network loss, heartbeat gaps, clock skew) never count. Each counted
event's contribution is its term of the penalty. An exempt event counts for nothing,
not even as a corroboration of another: it is listed after the counted ones, with a
penalty of 0 and `exempt` set, when it would have counted without the exemption
(weight(e) > 0), so that a reviewer sees what the allowance spared.
"""

from __future__ import annotations

import bisect
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

SEVERITY_FACTOR = {"INFO": 0.5, "WARNING": 1.0, "CRITICAL": 2.0}
GAZE_TYPES = frozenset({"eye_movement", "gaze_away", "face_not_detected"})
FOCUS_TYPES = frozenset({"tab_switch", "window_blur", "copy_paste"})
CORROBORATION_WINDOW = timedelta(seconds=5)
CORROBORATION_BOOST = 1.5
PENALTY_SCALE = 25.0


@dataclass(frozen=True)
class ScoredEvent:
    event_id: uuid.UUID
    event_type: str
    category: str
    severity: str
    is_anomaly: bool
    occurred_at: datetime
    dismissed: bool = False


@dataclass(frozen=True)
class Contribution:
    event_id: uuid.UUID
    event_type: str
    penalty: float
    corroborated: bool
    exempt: bool = False  # of a type the student's allowances exempt: penalty 0


@dataclass(frozen=True)
class Score:
    integrity: Decimal
    penalty: float
    # The events that moved the score, largest first; then the exempt ones, oldest first.
    contributions: list[Contribution]

    def by_type(self) -> dict[str, float]:
        return penalty_by_type(self.contributions)


def penalty_by_type(contributions: Iterable[Contribution]) -> dict[str, float]:
    """The penalty per event type, largest first: of a fresh score, or of a stored one.
    Exempt types moved nothing and are left out."""
    totals: dict[str, float] = defaultdict(float)
    for contribution in contributions:
        if not contribution.exempt:
            totals[contribution.event_type] += contribution.penalty
    return {k: round(v, 6) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def _corroborated(events: list[ScoredEvent]) -> set[uuid.UUID]:
    """Events with an event of the other group within the window."""
    gaze = sorted((e.occurred_at, e.event_id) for e in events if e.event_type in GAZE_TYPES)
    focus = sorted((e.occurred_at, e.event_id) for e in events if e.event_type in FOCUS_TYPES)
    found: set[uuid.UUID] = set()
    for mine, theirs in ((gaze, focus), (focus, gaze)):
        times = [t for t, _ in theirs]
        for at, event_id in mine:
            start = bisect.bisect_left(times, at - CORROBORATION_WINDOW)
            if start < len(times) and times[start] <= at + CORROBORATION_WINDOW:
                found.add(event_id)
    return found


def _chronological(events: Iterable[ScoredEvent]) -> list[ScoredEvent]:
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


def score(
    events: list[ScoredEvent],
    rule_weights: dict[str, float],
    exempt_types: frozenset[str] = frozenset(),
) -> Score:
    behaviour = [e for e in events if e.category == "INTEGRITY" and not e.dismissed]
    counted = [e for e in behaviour if e.event_type not in exempt_types]
    boosted = _corroborated(counted)
    contributions = []
    for event in _chronological(counted):
        boost = CORROBORATION_BOOST if event.event_id in boosted else 1.0
        penalty = _unboosted(event, rule_weights) * boost
        if penalty > 0:
            contributions.append(Contribution(event.event_id, event.event_type, penalty, boost > 1))
    total = math.fsum(c.penalty for c in contributions)
    integrity = Decimal(str(round(math.exp(-total / PENALTY_SCALE), 4)))
    contributions.sort(key=lambda c: (-c.penalty, str(c.event_id)))
    spared = [
        Contribution(event.event_id, event.event_type, 0.0, False, exempt=True)
        for event in _chronological(e for e in behaviour if e.event_type in exempt_types)
        if _unboosted(event, rule_weights) > 0
    ]
    return Score(integrity, round(total, 6), contributions + spared)


def _unboosted(event: ScoredEvent, rule_weights: dict[str, float]) -> float:
    weight = rule_weights.get(event.event_type, 1.0 if event.is_anomaly else 0.0)
    return weight * SEVERITY_FACTOR[event.severity]
