from decimal import Decimal

import pytest

from veritas_grpc.domain.exams import (
    AttemptFacts,
    AttemptStatus,
    DropoutLabel,
    IntegrityStatus,
    change,
    contribution,
    integrity_status,
    percentage,
    to_cents,
)


def test_grading_arithmetic_keeps_two_decimals():
    assert to_cents(33.335) == Decimal("33.34")
    assert percentage(Decimal("1"), Decimal("3")) == Decimal("33.33")
    assert percentage(Decimal("80"), Decimal("80")) == Decimal("100.00")


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (None, None),
        (Decimal("0.8"), IntegrityStatus.GOOD),
        (Decimal("0.7999"), IntegrityStatus.WATCH),
        (Decimal("0.5"), IntegrityStatus.WATCH),
        (Decimal("0.4999"), IntegrityStatus.AT_RISK),
    ],
)
def test_integrity_bands(score, band):
    assert integrity_status(score) == band


def test_a_new_attempt_adds_one_attempt_only():
    assert change(None, AttemptFacts(AttemptStatus.IN_PROGRESS)) == {"attempt_count": 1}


def test_grading_moves_the_sums_by_the_difference():
    submitted = AttemptFacts(AttemptStatus.SUBMITTED)
    graded = AttemptFacts(AttemptStatus.SUBMITTED, Decimal("40"), Decimal("40"), passed=False)
    regraded = AttemptFacts(AttemptStatus.SUBMITTED, Decimal("55"), Decimal("55"), passed=True)
    assert change(submitted, graded) == {
        "graded_count": 1,
        "score_sum": Decimal("40"),
        "percentage_sum": Decimal("40"),
    }
    assert change(graded, regraded) == {
        "score_sum": Decimal("15"),
        "percentage_sum": Decimal("15"),
        "passed_count": 1,
    }


def test_finishing_counts_only_gradable_ends():
    started = AttemptFacts(AttemptStatus.IN_PROGRESS)
    assert change(started, AttemptFacts(AttemptStatus.SUBMITTED)) == {"finished_count": 1}
    assert change(started, AttemptFacts(AttemptStatus.TIMED_OUT)) == {"finished_count": 1}
    assert change(started, AttemptFacts(AttemptStatus.ABANDONED)) == {}


def test_labels_and_risk():
    copy = AttemptFacts(AttemptStatus.SUBMITTED, label=DropoutLabel.COPY, flagged=True)
    counts = contribution(copy)
    assert counts["copy_count"] == 1 and counts["high_risk_count"] == 1
    assert counts["flagged_count"] == 1
    low = AttemptFacts(AttemptStatus.SUBMITTED, integrity=Decimal("0.49"), label=DropoutLabel.SAFE)
    assert contribution(low)["high_risk_count"] == 1
    relabelled = AttemptFacts(
        AttemptStatus.SUBMITTED, integrity=Decimal("0.9"), label=DropoutLabel.SAFE
    )
    assert change(low, relabelled) == {
        "high_risk_count": -1,
        "integrity_sum": Decimal("0.41"),
        "integrity_at_risk_count": -1,
        "integrity_good_count": 1,
    }
