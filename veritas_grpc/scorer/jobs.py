"""One leased job, start to end: keep the lease alive, read the evidence, score it,
save the analysis with the lease (or fail the job with the reason)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import grpc
from veritas.v1 import analysis_pb2

from veritas_grpc.scorer.analysis import Analysis, save_request
from veritas_grpc.scorer.api import RETRYABLE, GaveUp, QueueApi
from veritas_grpc.scorer.backoff import Backoff
from veritas_grpc.scorer.protocol import ScoringError

MAX_REASON_CHARACTERS = 1000  # FailAnalysisJob's limit


class Scorer(Protocol):
    async def analyse(
        self,
        evidence: analysis_pb2.AttemptEvidence,
        events: AsyncIterator[analysis_pb2.EvidenceEvent],
    ) -> Analysis: ...


class Outcome(enum.Enum):
    DONE = "done"  # saved: the job is complete
    REPLAYED = "replayed"  # an earlier save of this try had gone through
    FAILED = "failed"  # FailAnalysisJob: back to the queue with a failed try
    LOST = "lost"  # the lease was not held any more (expired, taken over)
    RELEASED = "released"  # given back unfinished (shutdown)


@dataclass(frozen=True)
class JobResult:
    outcome: Outcome
    detail: str = ""
    analysis: Analysis | None = None


@dataclass(frozen=True)
class JobSettings:
    lease_seconds: int
    page_size: int = 500
    # Reading the evidence and scoring it again after a transient failure.
    evidence_tries: int = 3


async def keep_lease(api: QueueApi, token: str, lease_seconds: int) -> None:
    """Extend the lease every third of its length; return when it is lost (refused, or
    still unreachable when it would have expired)."""
    interval = lease_seconds / 3
    expires = time.monotonic() + lease_seconds
    request = analysis_pb2.ExtendAnalysisJobLeaseRequest(
        lease_token=token, lease_seconds=lease_seconds
    )
    while True:
        await asyncio.sleep(interval)
        try:
            await api.call(
                api.stub.ExtendAnalysisJobLease,
                request,
                timeout=interval,
                retry_until=expires - 1,
            )
        except GaveUp:
            return
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return
            raise
        expires = time.monotonic() + lease_seconds


async def run_job(
    api: QueueApi, scorer: Scorer, lease: analysis_pb2.AnalysisJobLease, settings: JobSettings
) -> JobResult:
    keeper = asyncio.create_task(keep_lease(api, lease.lease_token, settings.lease_seconds))
    work = asyncio.create_task(_score_and_save(api, scorer, lease, settings))
    try:
        await asyncio.wait({keeper, work}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        return JobResult(Outcome.LOST, "the lease could not be extended")
    finally:
        for task in (keeper, work):
            task.cancel()
        for task in (keeper, work):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _score_and_save(
    api: QueueApi, scorer: Scorer, lease: analysis_pb2.AnalysisJobLease, settings: JobSettings
) -> JobResult:
    try:
        analysis = await _analyse(api, scorer, lease.job.attempt_id, settings)
    except ScoringError as error:
        return await _fail(api, lease, str(error), time.monotonic() + settings.lease_seconds)
    # Retried while the lease lasts (keep_lease extends it meanwhile).
    deadline = time.monotonic() + settings.lease_seconds
    request = save_request(lease, analysis)
    try:
        # The same request_id on every retry: a save whose answer was lost is replayed.
        answer = await api.call(api.stub.CreateBehaviorAnalysis, request, retry_until=deadline)
    except GaveUp as error:
        return JobResult(Outcome.LOST, f"the save never got through: {error}", analysis)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return JobResult(Outcome.LOST, error.details() or "", analysis)
        if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
            reason = f"the server refused the analysis: {error.details()}"
            return await _fail(api, lease, reason, deadline)
        raise
    outcome = Outcome.REPLAYED if answer.replayed else Outcome.DONE
    return JobResult(outcome, "", analysis)


async def _analyse(
    api: QueueApi, scorer: Scorer, attempt_id: str, settings: JobSettings
) -> Analysis:
    """The scorer's analysis; the evidence is read again (and scored again) after a
    transient failure; a scorer's exception is a ScoringError, so the job fails."""
    backoff = Backoff()
    for attempt in range(1, settings.evidence_tries + 1):
        try:
            found = await api.evidence(attempt_id, settings.page_size)
            return await scorer.analyse(found.evidence, found.events)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                await api.session.renew(None)
            elif code not in RETRYABLE or attempt == settings.evidence_tries:
                raise ScoringError(
                    f"GetAttemptEvidence failed: {code.name}: {error.details()}"
                ) from None
            await asyncio.sleep(backoff.next_delay())
        except ScoringError:
            raise
        except Exception as error:  # the scorer's own failure: the job fails with it
            raise ScoringError(f"the scorer failed: {type(error).__name__}: {error}") from None
    raise ScoringError("GetAttemptEvidence kept failing")


async def _fail(
    api: QueueApi, lease: analysis_pb2.AnalysisJobLease, reason: str, deadline: float
) -> JobResult:
    reason = reason[:MAX_REASON_CHARACTERS] or "unknown"
    request = analysis_pb2.FailAnalysisJobRequest(lease_token=lease.lease_token, reason=reason)
    try:
        await api.call(api.stub.FailAnalysisJob, request, retry_until=deadline)
    except GaveUp:
        return JobResult(Outcome.LOST, f"{reason} (and the failure was not recorded)")
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return JobResult(Outcome.LOST, reason)
        raise
    return JobResult(Outcome.FAILED, reason)
