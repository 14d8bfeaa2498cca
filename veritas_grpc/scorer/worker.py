"""The claim loop: at most `concurrency` jobs in flight, a long poll for more whenever a
slot is free, and a graceful stop (in-flight jobs get a grace period, the rest are
released so that another replica takes them at once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass

import grpc
from veritas.v1 import analysis_pb2, common_pb2

from veritas_grpc.scorer.api import GaveUp, QueueApi
from veritas_grpc.scorer.jobs import JobResult, JobSettings, Outcome, Scorer, run_job

log = logging.getLogger("veritas.scorer")
RELEASE_RETRY_SECONDS = 5.0
# The long poll's own deadline is this much longer than its wait (the contract's advice).
CLAIM_DEADLINE_MARGIN_SECONDS = 10


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    lease_seconds: int = 60
    wait_seconds: int = 20
    page_size: int = 500
    grace_seconds: float = 20.0


class Worker:
    def __init__(self, api: QueueApi, scorer: Scorer, settings: WorkerSettings) -> None:
        self._api = api
        self._scorer = scorer
        self._settings = settings
        self._jobs = JobSettings(settings.lease_seconds, settings.page_size)
        self._running: dict[asyncio.Task[JobResult], _InFlight] = {}
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self.outcomes: Counter[str] = Counter()

    def stop(self) -> None:
        """The first call stops claiming and lets in-flight jobs finish within the grace
        period; a second one releases them at once."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()

    async def run(self) -> None:
        if not await self._signed_in():
            return
        while not self._stopping.is_set():
            free = self._settings.concurrency - len(self._running)
            if free <= 0:
                await self._first_of(*self._running)
                continue
            for lease in await self._claim_unless_stopped(free):
                self._start(lease)
        await self._drain()
        log.info("scorer stopped", extra={"fields": dict(self.outcomes)})

    async def _signed_in(self) -> bool:
        """Sign in first, so that bad credentials end it here (SignInRefused); False when
        stopped before the server answered (it may be down: sign-in retries meanwhile)."""
        sign_in = asyncio.ensure_future(self._api.session.metadata())
        await self._first_of(sign_in)
        if sign_in.done():
            sign_in.result()
            return True
        sign_in.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sign_in
        log.info("scorer stopped before it signed in")
        return False

    async def _first_of(self, *tasks: asyncio.Future[object]) -> None:
        """Until one of `tasks` is done, or stop() is called."""
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()

    async def _claim_unless_stopped(self, free: int) -> list[analysis_pb2.AnalysisJobLease]:
        claim = asyncio.ensure_future(self._claim(free))
        await self._first_of(claim)
        if claim.done():
            return claim.result()
        # Cut short by a stop. Should the server have granted leases in the instant
        # before, they expire and their jobs are redelivered then.
        claim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await claim
        return []

    async def _claim(self, free: int) -> list[analysis_pb2.AnalysisJobLease]:
        wait = self._settings.wait_seconds
        request = analysis_pb2.ClaimAnalysisJobsRequest(
            max_jobs=free, lease_seconds=self._settings.lease_seconds, wait_seconds=wait
        )
        answer = await self._api.call(
            self._api.stub.ClaimAnalysisJobs,
            request,
            timeout=wait + CLAIM_DEADLINE_MARGIN_SECONDS,
        )
        return list(answer.leases)

    def _start(self, lease: analysis_pb2.AnalysisJobLease) -> None:
        task = asyncio.create_task(run_job(self._api, self._scorer, lease, self._jobs))
        self._running[task] = _InFlight(lease, time.monotonic())
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[JobResult]) -> None:
        job = self._running.pop(task)
        if task.cancelled():
            return  # _drain releases it and logs its line
        error = task.exception()
        if error is not None:
            self.outcomes["error"] += 1
            fields = _job_fields(job)
            log.error("job ended by an unexpected error", exc_info=error, extra={"fields": fields})
            return
        self._log(job, task.result())

    def _log(self, job: _InFlight, result: JobResult) -> None:
        self.outcomes[result.outcome.value] += 1
        fields = _job_fields(job)
        fields["outcome"] = result.outcome.value
        if result.analysis is not None:
            fields["integrity_score"] = result.analysis.integrity_score
            fields["dropout_label"] = common_pb2.DropoutLabel.Name(result.analysis.dropout_label)
            fields["event_count"] = result.analysis.event_count
        if result.detail:
            fields["detail"] = result.detail
        saved = result.outcome in (Outcome.DONE, Outcome.REPLAYED)
        log.log(
            logging.INFO if saved else logging.WARNING,
            f"job {result.outcome.value}",
            extra={"fields": fields},
        )

    async def _drain(self) -> None:
        """In-flight jobs finish within the grace period (a second stop() cuts it short);
        the others are cancelled and their leases released."""
        tasks = list(self._running)
        if not tasks:
            return
        all_done = asyncio.ensure_future(asyncio.wait(tasks))
        hurry = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait(
            [all_done, hurry],
            timeout=self._settings.grace_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for waiter in (all_done, hurry):
            waiter.cancel()
        unfinished = [(task, self._running[task]) for task in tasks if not task.done()]
        for task, _ in unfinished:
            task.cancel()
        await asyncio.gather(*(task for task, _ in unfinished), return_exceptions=True)
        await asyncio.gather(*(self._release(job) for _, job in unfinished))

    async def _release(self, job: _InFlight) -> None:
        request = analysis_pb2.ReleaseAnalysisJobRequest(lease_token=job.lease.lease_token)
        try:
            await self._api.call(
                self._api.stub.ReleaseAnalysisJob,
                request,
                retry_until=time.monotonic() + RELEASE_RETRY_SECONDS,
            )
            result = JobResult(Outcome.RELEASED, "stopping")
        except (GaveUp, grpc.aio.AioRpcError) as error:
            # Not held any more (it completed meanwhile), or unreachable: it expires.
            detail = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
            result = JobResult(Outcome.LOST, f"not released: {detail}")
        self._log(job, result)


@dataclass(frozen=True)
class _InFlight:
    lease: analysis_pb2.AnalysisJobLease
    started: float


def _job_fields(in_flight: _InFlight) -> dict[str, object]:
    job = in_flight.lease.job
    return {
        "job_id": job.job_id,
        "attempt_id": job.attempt_id,
        "reason": analysis_pb2.AnalysisJobReason.Name(job.reason),
        "failed_try_count": job.failed_try_count,
        "seconds": round(time.monotonic() - in_flight.started, 3),
    }
