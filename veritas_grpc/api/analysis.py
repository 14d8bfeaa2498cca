"""veritas.v1.AnalysisService: proto in, service call, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from veritas.v1 import analysis_pb2, analysis_pb2_grpc

from veritas_grpc.api import analysis_convert as convert
from veritas_grpc.api import exam_convert, job_convert
from veritas_grpc.api.streaming import pages_of
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.analysis import AnalysisService
from veritas_grpc.services.analysis_queue import AnalysisQueue
from veritas_grpc.services.job_claims import JobClaims

Context = grpc.aio.ServicerContext


class AnalysisServicer(analysis_pb2_grpc.AnalysisServiceServicer):
    def __init__(
        self,
        analysis: AnalysisService,
        queue: AnalysisQueue,
        claims: JobClaims,
        runner: BlockingRunner,
    ) -> None:
        self._analysis = analysis
        self._queue = queue
        self._claims = claims
        self._runner = runner
        self._run = runner.run

    async def CreateBehaviorAnalysis(
        self, request: analysis_pb2.CreateBehaviorAnalysisRequest, context: Context
    ) -> analysis_pb2.CreateBehaviorAnalysisResponse:
        saved = await self._run(
            self._analysis.save,
            current_principal(),
            request.attempt_id,
            convert.external(request),
        )
        return analysis_pb2.CreateBehaviorAnalysisResponse(
            analysis=convert.analysis(saved.analysis), replayed=saved.replayed
        )

    async def AnalyzeAttempt(
        self, request: analysis_pb2.AnalyzeAttemptRequest, context: Context
    ) -> analysis_pb2.AnalyzeAttemptResponse:
        result = await self._run(self._analysis.analyze, current_principal(), request.attempt_id)
        response = analysis_pb2.AnalyzeAttemptResponse(
            integrity_score=float(result.score.integrity_score),
            penalty=result.score.penalty,
            contributions=[convert.contribution(c) for c in result.score.contributions],
            penalty_by_type=convert.penalty_by_type(result.score.penalty_by_type),
            saved=result.saved,
        )
        if result.current is not None:
            response.current.CopyFrom(convert.analysis(result.current))
        return response

    async def RecomputeStudentPerformance(
        self, request: analysis_pb2.RecomputeStudentPerformanceRequest, context: Context
    ) -> analysis_pb2.RecomputeStudentPerformanceResponse:
        performance = await self._run(
            self._analysis.recompute_student, current_principal(), request.student_id
        )
        return analysis_pb2.RecomputeStudentPerformanceResponse(
            performance=exam_convert.performance(performance)
        )

    async def GetHighRiskSummary(
        self, request: analysis_pb2.GetHighRiskSummaryRequest, context: Context
    ) -> analysis_pb2.GetHighRiskSummaryResponse:
        summary = await self._run(self._analysis.high_risk_summary, current_principal())
        return analysis_pb2.GetHighRiskSummaryResponse(
            by_label=exam_convert.risk_counts(summary.by_label),
            by_integrity=convert.integrity_bands(summary.by_integrity),
            most_flagged_exams=[convert.flagged_exam(exam) for exam in summary.most_flagged],
            last_hour_critical_event_count=summary.critical_last_hour,
            last_day_critical_event_count=summary.critical_last_day,
            critical_events_per_hour_last_day=summary.critical_per_hour_last_day,
        )

    # The analysis queue -----------------------------------------------------------------

    async def ClaimAnalysisJobs(
        self, request: analysis_pb2.ClaimAnalysisJobsRequest, context: Context
    ) -> analysis_pb2.ClaimAnalysisJobsResponse:
        leases = await self._claims.claim(
            current_principal(),
            request.max_jobs,
            request.lease_seconds,
            request.wait_seconds,
            context.time_remaining(),
        )
        return analysis_pb2.ClaimAnalysisJobsResponse(
            leases=[job_convert.lease(lease) for lease in leases]
        )

    async def ExtendAnalysisJobLease(
        self, request: analysis_pb2.ExtendAnalysisJobLeaseRequest, context: Context
    ) -> analysis_pb2.ExtendAnalysisJobLeaseResponse:
        job = await self._run(
            self._queue.extend, current_principal(), request.lease_token, request.lease_seconds
        )
        return analysis_pb2.ExtendAnalysisJobLeaseResponse(job=job_convert.job(job))

    async def FailAnalysisJob(
        self, request: analysis_pb2.FailAnalysisJobRequest, context: Context
    ) -> analysis_pb2.FailAnalysisJobResponse:
        retry_after = (
            request.retry_after_seconds if request.HasField("retry_after_seconds") else None
        )
        job = await self._run(
            self._queue.fail, current_principal(), request.lease_token, request.reason, retry_after
        )
        return analysis_pb2.FailAnalysisJobResponse(job=job_convert.job(job))

    async def ReleaseAnalysisJob(
        self, request: analysis_pb2.ReleaseAnalysisJobRequest, context: Context
    ) -> analysis_pb2.ReleaseAnalysisJobResponse:
        job = await self._run(self._queue.release, current_principal(), request.lease_token)
        return analysis_pb2.ReleaseAnalysisJobResponse(job=job_convert.job(job))

    async def GetAttemptEvidence(
        self, request: analysis_pb2.GetAttemptEvidenceRequest, context: Context
    ) -> AsyncIterator[analysis_pb2.GetAttemptEvidenceResponse]:
        pages = await self._run(
            self._queue.evidence, current_principal(), request.attempt_id, request.page_size
        )
        async for page in pages_of(pages, self._runner):
            yield job_convert.evidence_page(page)

    async def ListAnalysisJobs(
        self, request: analysis_pb2.ListAnalysisJobsRequest, context: Context
    ) -> analysis_pb2.ListAnalysisJobsResponse:
        page, summary = await self._run(
            self._queue.list_jobs,
            current_principal(),
            job_convert.state_filter(request.state),
            request.attempt_id,
            request.page_size,
            request.page_token,
        )
        return analysis_pb2.ListAnalysisJobsResponse(
            jobs=[job_convert.job(job) for job in page.items],
            next_page_token=page.next_token,
            queue=job_convert.queue_summary(summary),
        )

    async def RetryAnalysisJob(
        self, request: analysis_pb2.RetryAnalysisJobRequest, context: Context
    ) -> analysis_pb2.RetryAnalysisJobResponse:
        job = await self._run(self._queue.retry, current_principal(), request.job_id)
        return analysis_pb2.RetryAnalysisJobResponse(job=job_convert.job(job))
