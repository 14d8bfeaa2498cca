"""Exact scores for fixed event sets."""

import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from veritas_grpc.domain.scoring import ScoredEvent, score

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
RULES = {"tab_switch": 3.0, "eye_movement": 1.0, "multiple_faces": 4.0}


def _event(event_type, seconds, severity="WARNING", category="INTEGRITY", **fields):
    return ScoredEvent(
        event_id=fields.pop("event_id", uuid.uuid4()),
        event_type=event_type,
        category=category,
        severity=severity,
        is_anomaly=fields.pop("is_anomaly", False),
        occurred_at=T0 + timedelta(seconds=seconds),
        **fields,
    )


def _integrity(penalty):
    return Decimal(str(round(math.exp(-penalty / 25), 4)))


def test_no_events_is_full_integrity():
    result = score([], RULES)
    assert result.integrity == Decimal("1.0") and result.contributions == []


def test_weights_and_severities():
    events = [
        _event("tab_switch", 0),  # 3 * 1
        _event("multiple_faces", 60, "CRITICAL"),  # 4 * 2
        _event("eye_movement", 120, "INFO"),  # 1 * 0.5
        _event("noise", 180),  # no rule, not an anomaly: 0
        _event("voice_detected", 240, is_anomaly=True),  # no rule, anomaly: 1 * 1
    ]
    result = score(events, RULES)
    assert result.penalty == 12.5
    assert result.integrity == _integrity(12.5) == Decimal("0.6065")
    assert result.by_type() == {
        "multiple_faces": 8.0,
        "tab_switch": 3.0,
        "voice_detected": 1.0,
        "eye_movement": 0.5,
    }


def test_gaze_and_tab_switch_within_five_seconds_corroborate_each_other():
    gaze, tab = _event("eye_movement", 0), _event("tab_switch", 4)
    apart = [_event("eye_movement", 100), _event("tab_switch", 106)]
    result = score([gaze, tab, *apart], RULES)
    # corroborated: (1 + 3) * 1.5; apart: 1 + 3
    assert result.penalty == 10.0
    corroborated = {c.event_id for c in result.contributions if c.corroborated}
    assert corroborated == {gaze.event_id, tab.event_id}


def test_technical_events_never_count():
    events = [_event("network_loss", 0, "CRITICAL", "TECHNICAL", is_anomaly=True)]
    assert score(events, {"network_loss": 10.0}).integrity == Decimal("1.0")


def test_dismissed_events_stop_counting():
    kept, dismissed = _event("tab_switch", 0), _event("tab_switch", 30, dismissed=True)
    result = score([kept, dismissed], RULES)
    assert result.penalty == 3.0
    assert [c.event_id for c in result.contributions] == [kept.event_id]


def test_the_same_events_in_any_order_give_the_same_result():
    events = [_event("tab_switch", s) for s in range(0, 50, 7)] + [_event("eye_movement", 3)]
    assert score(events, RULES) == score(list(reversed(events)), RULES)
