"""Event exemptions in the built-in rules (domain/scoring.py) and in the reference
scorer, which reads them from the evidence header."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.unit.scorer_evidence import evidence, evidence_event, stream_of
from veritas_grpc.domain.scoring import Contribution, ScoredEvent, score
from veritas_grpc.scorer.rules import RulesScorer

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
RULES = {"tab_switch": 3.0, "voice_detected": 2.0, "face_not_detected": 4.0}
VOICE = frozenset({"voice_detected"})


def _event(event_type, seconds, severity="WARNING", **fields):
    return ScoredEvent(
        event_id=fields.pop("event_id", uuid.uuid4()),
        event_type=event_type,
        category=fields.pop("category", "INTEGRITY"),
        severity=severity,
        is_anomaly=fields.pop("is_anomaly", False),
        occurred_at=T0 + timedelta(seconds=seconds),
        **fields,
    )


def test_exempt_events_contribute_nothing_and_are_listed_last_with_penalty_0():
    tab = _event("tab_switch", 0)  # 3 * 1
    voices = [_event("voice_detected", 60, "CRITICAL"), _event("voice_detected", 30)]
    result = score([tab, *voices], RULES, VOICE)
    assert result.penalty == 3.0
    assert result.integrity == Decimal(str(round(math.exp(-3 / 25), 4)))
    assert result.contributions == [
        Contribution(tab.event_id, "tab_switch", 3.0, False),
        # Oldest first, after the events that moved the score.
        Contribution(voices[1].event_id, "voice_detected", 0.0, False, exempt=True),
        Contribution(voices[0].event_id, "voice_detected", 0.0, False, exempt=True),
    ]
    assert result.by_type() == {"tab_switch": 3.0}
    # Without the exemption the same events count: 3 + 2 * 2 + 2 * 1.
    assert score([tab, *voices], RULES).penalty == 9.0


def test_an_exempt_event_corroborates_nothing():
    gaze, tab = _event("face_not_detected", 0), _event("tab_switch", 2)
    boosted = score([gaze, tab], RULES)
    assert boosted.penalty == (4 + 3) * 1.5
    exempt_gaze = score([gaze, tab], RULES, frozenset({"face_not_detected"}))
    assert exempt_gaze.penalty == 3.0
    assert [(c.event_type, c.corroborated, c.exempt) for c in exempt_gaze.contributions] == [
        ("tab_switch", False, False),
        ("face_not_detected", False, True),
    ]


def test_only_events_that_would_have_counted_are_listed_as_exempt():
    kept = _event("voice_detected", 0)
    never_counted = [
        _event("voice_detected", 10, dismissed=True),
        _event("voice_detected", 20, category="TECHNICAL"),
        _event("unruled", 30),  # no rule, not an anomaly: weight 0
    ]
    result = score([kept, *never_counted], RULES, frozenset({"voice_detected", "unruled"}))
    assert result.penalty == 0.0 and result.integrity == Decimal("1.0")
    assert [c.event_id for c in result.contributions] == [kept.event_id]


def test_the_same_events_and_exemptions_in_any_order_give_the_same_result():
    rng = random.Random(15)
    kinds = ["tab_switch", "voice_detected", "face_not_detected"]
    events = [_event(rng.choice(kinds), rng.randrange(0, 120)) for _ in range(60)]
    first = score(events, RULES, VOICE)
    for _ in range(5):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert score(shuffled, RULES, VOICE) == first


def _analyse(items, exempt=()):
    header = evidence(RULES)
    header.exempt_event_types.extend(exempt)
    return asyncio.run(RulesScorer().analyse(header, stream_of(items)))


def test_the_reference_scorer_honours_the_evidence_exemptions():
    items = [
        evidence_event("tab_switch", 0),
        evidence_event("voice_detected", 30, "CRITICAL"),
        evidence_event("voice_detected", 90, "CRITICAL"),
    ]
    only_tab = _analyse(items[:1])
    exempt = _analyse(items, ["voice_detected"])
    assert exempt.integrity_score == only_tab.integrity_score
    assert _analyse(items).integrity_score < exempt.integrity_score
    assert "from 1 of 1 behaviour events" in exempt.llm_summary
    assert "2 events of types exempt by an allowance" in exempt.llm_summary
    assert exempt.llm_reasoning.count("(exempt by allowance)") == 2
