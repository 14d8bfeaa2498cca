"""The analysis queue's rules without a database: backoff, bounds, and the bell that
wakes waiting claims."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from veritas_grpc.adapters.job_wakeups import JobBell
from veritas_grpc.domain.analysis_jobs import RetryPolicy, claim_request, lease_token_hash
from veritas_grpc.domain.errors import InvalidArgument


def test_the_backoff_doubles_per_failed_try_up_to_an_hour():
    policy = RetryPolicy(max_tries=5, base_seconds=10)
    assert [policy.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert policy.backoff(30) == timedelta(hours=1)


def test_a_claim_s_zeroes_mean_the_defaults_and_its_bounds_are_fields():
    assert claim_request(0, 0, 0) == claim_request(1, 300, 0)
    with pytest.raises(InvalidArgument) as refused:
        claim_request(101, 5, 61)
    assert {v.field for v in refused.value.violations} == {
        "max_jobs",
        "lease_seconds",
        "wait_seconds",
    }


def test_a_lease_token_is_stored_as_its_hash_and_must_be_sensible():
    assert lease_token_hash("abc") != "abc" and len(lease_token_hash("abc")) == 64
    for bad in ("", "x" * 101):
        with pytest.raises(InvalidArgument):
            lease_token_hash(bad)


def test_the_bell_wakes_a_waiter_and_a_ring_before_the_wait_is_not_missed():
    async def scenario() -> tuple[float, float, float]:
        bell = JobBell()
        loop = asyncio.get_running_loop()
        since = bell.mark()
        bell.publish("")  # rung between the look and the wait
        started = loop.time()
        await bell.wait(since, timeout=60)
        missed = loop.time() - started
        since = bell.mark()
        loop.call_later(0.05, bell.reconnected)
        started = loop.time()
        await bell.wait(since, timeout=60)
        woken = loop.time() - started
        started = loop.time()
        await bell.wait(bell.mark(), timeout=0.05)
        return missed, woken, loop.time() - started

    missed, woken, quiet = asyncio.run(scenario())
    # Not a measure of speed: unrung, each wait would have slept its whole 60 s.
    assert missed < 30 and woken < 30 and quiet >= 0.05
