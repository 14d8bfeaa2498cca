"""The scorer's backoff (full jitter) and the save's idempotency key."""

from __future__ import annotations

import random

from veritas.v1 import analysis_pb2, common_pb2

from veritas_grpc.scorer.analysis import Analysis, request_id_for, save_request
from veritas_grpc.scorer.backoff import Backoff


def test_full_jitter_within_a_doubling_window_up_to_the_cap():
    backoff = Backoff(base_seconds=0.5, cap_seconds=4.0, uniform=random.Random(3).random)
    ceilings = []
    for _ in range(6):
        ceiling = backoff.ceiling()
        assert 0 <= backoff.next_delay() <= ceiling
        ceilings.append(ceiling)
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.ceiling() == 0.5


def test_replicas_spread_out_instead_of_retrying_together():
    uniform = random.Random(11).random
    delays = []
    for _ in range(1000):
        backoff = Backoff(base_seconds=1.0, cap_seconds=8.0, uniform=uniform)
        backoff.failures = 3
        delays.append(backoff.next_delay())
    assert min(delays) < 1 and max(delays) > 7  # spread over the whole window
    assert 3.5 < sum(delays) / len(delays) < 4.5


def test_a_long_outage_does_not_overflow():
    backoff = Backoff(base_seconds=0.25, cap_seconds=15.0)
    backoff.failures = 5000
    assert backoff.ceiling() == 15.0


def _lease(tries: int) -> analysis_pb2.AnalysisJobLease:
    job = analysis_pb2.AnalysisJob(
        job_id="0b0e4b6a-43f4-4cde-9d7e-6a3b1d2e9f10", attempt_id="a-1", failed_try_count=tries
    )
    return analysis_pb2.AnalysisJobLease(lease_token="secret", job=job)


def test_the_request_id_is_one_per_try_of_a_job_and_fits_the_limit():
    first, again, retried = _lease(0), _lease(0), _lease(1)
    assert request_id_for(first.job) == request_id_for(again.job)
    assert request_id_for(first.job) != request_id_for(retried.job)
    assert len(request_id_for(_lease(10**9).job)) <= 64


def test_the_save_request_carries_the_lease_and_leaves_an_unset_index_unset():
    analysis = Analysis(0.75, common_pb2.DROPOUT_LABEL_SAFE, model_name="m", model_version="1")
    request = save_request(_lease(2), analysis)
    assert request.lease_token == "secret" and request.attempt_id == "a-1"
    assert request.request_id.endswith("-try-2")
    assert not request.HasField("learning_momentum_index")
    assert request.model.name == "m"
