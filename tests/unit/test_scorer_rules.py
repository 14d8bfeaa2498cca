"""The reference scorer's built-in rules: the evidence fed to domain/scoring.py as
AnalyzeAttempt feeds it, and the dropout label's rule."""

from __future__ import annotations

import asyncio

import pytest
from veritas.v1 import common_pb2, resources_pb2

from tests.unit.scorer_evidence import evidence, evidence_event, stream_of
from veritas_grpc.domain.scoring import score
from veritas_grpc.scorer.rules import RulesScorer, dropout_label, scored_event

RULES = {"tab_switch": 3.0, "face_not_detected": 4.0}


def analyse(items, **fields):
    return asyncio.run(RulesScorer().analyse(evidence(RULES, **fields), stream_of(items)))


def test_the_same_score_as_the_server_rules_for_the_same_events():
    items = [
        evidence_event("tab_switch", 0),  # 3 * 1, corroborated by the gaze event: x1.5
        evidence_event("face_not_detected", 2, "CRITICAL"),  # 4 * 2 * 1.5
        evidence_event("copy_paste", 60, "CRITICAL", anomaly=True),  # no rule: 1 * 2
        evidence_event("noise", 90),  # no rule, no anomaly: 0
    ]
    analysis = analyse(items)
    expected = score([scored_event(i) for i in items], RULES)
    assert analysis.integrity_score == float(expected.integrity)
    assert expected.penalty == pytest.approx(3 * 1.5 + 8 * 1.5 + 2)
    assert analysis.event_count == 4
    assert analysis.model_name == "veritas-reference-scorer"


def test_dismissed_and_technical_events_never_count():
    counted = analyse([evidence_event("tab_switch", 0)])
    with_others = analyse(
        [
            evidence_event("tab_switch", 0),
            evidence_event("tab_switch", 30, "CRITICAL", dismissed=True),
            evidence_event("network_loss", 40, "CRITICAL", technical=True, anomaly=True),
        ]
    )
    assert with_others.integrity_score == counted.integrity_score < 1
    assert "1 events dismissed" in with_others.llm_summary
    assert "1 technical events" in with_others.llm_summary


def test_no_events_is_full_integrity_and_safe():
    analysis = analyse([])
    assert analysis.integrity_score == 1.0
    assert analysis.dropout_label == common_pb2.DROPOUT_LABEL_SAFE
    assert analysis.recommendations == ()


def test_a_low_integrity_is_labelled_copy_with_advice_for_the_student():
    items = [evidence_event("face_not_detected", s * 60, "CRITICAL") for s in range(4)]
    analysis = analyse(items)  # penalty 32: exp(-32/25) = 0.278
    assert analysis.integrity_score < 0.5
    assert analysis.dropout_label == common_pb2.DROPOUT_LABEL_COPY
    assert analysis.recommendations
    assert "face_not_detected" in analysis.llm_reasoning


def _attempt(status=common_pb2.ATTEMPT_STATUS_SUBMITTED, passed=None):
    attempt = resources_pb2.Attempt(status=status)
    if passed is not None:
        attempt.passed = passed
    return attempt


def _student(mean_percent=None):
    student = resources_pb2.PerformanceSummary()
    if mean_percent is not None:
        student.mean_score_percent = mean_percent
    return student


@pytest.mark.parametrize(
    ("integrity", "attempt", "student", "label"),
    [
        (0.9, _attempt(), _student(), "SAFE"),
        (0.49, _attempt(passed=True), _student(90), "COPY"),  # behaviour comes first
        (0.9, _attempt(common_pb2.ATTEMPT_STATUS_ABANDONED), _student(), "NO_INTEREST"),
        (0.9, _attempt(passed=False), _student(80), "INCAPABLE"),
        (0.9, _attempt(passed=True), _student(20), "SAFE"),  # this grade wins
        (0.9, _attempt(), _student(40), "INCAPABLE"),  # ungraded: the student's record
        (0.9, _attempt(common_pb2.ATTEMPT_STATUS_TIMED_OUT), _student(60), "SAFE"),
        (0.5, _attempt(), _student(), "SAFE"),  # 0.5 is not below the threshold
    ],
)
def test_the_dropout_label_rule(integrity, attempt, student, label):
    assert common_pb2.DropoutLabel.Name(dropout_label(integrity, attempt, student)) == (
        f"DROPOUT_LABEL_{label}"
    )
