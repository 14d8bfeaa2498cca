"""The extra time a deadline holds (domain/allowances.py extra_minutes_in): what
Attempt.extra_time_minutes shows, whole minutes rounded down, never negative."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from veritas_grpc.domain.allowances import extra_minutes_in

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("after_the_start", "extra"),
    [
        (timedelta(minutes=90), 30),  # all of the extra time granted
        (timedelta(minutes=74, seconds=59), 14),  # capped by the close: rounded down
        (timedelta(minutes=60), 0),
        (timedelta(minutes=45), 0),  # the close cuts the duration itself
    ],
)
def test_the_extra_minutes_a_deadline_holds(after_the_start, extra):
    assert extra_minutes_in(START, 60, START + after_the_start) == extra
