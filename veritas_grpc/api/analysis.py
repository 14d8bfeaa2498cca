"""veritas.v1.AnalysisService: proto in, service call, proto out."""

from __future__ import annotations

import grpc
from veritas.v1 import analysis_pb2, analysis_pb2_grpc

from veritas_grpc.api import analysis_convert as convert
from veritas_grpc.api import exam_convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.analysis import AnalysisService

Context = grpc.aio.ServicerContext


class AnalysisServicer(analysis_pb2_grpc.AnalysisServiceServicer):
    def __init__(self, analysis: AnalysisService, runner: BlockingRunner) -> None:
        self._analysis = analysis
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
