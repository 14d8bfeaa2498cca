"""veritas.v1.AnalysisService: proto in, service call, proto out."""

from __future__ import annotations

import grpc
from veritas.v1 import analysis_pb2, analysis_pb2_grpc, exams_pb2

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

    async def SaveBehaviorAnalysis(
        self, request: analysis_pb2.SaveBehaviorAnalysisRequest, context: Context
    ) -> analysis_pb2.SaveBehaviorAnalysisResponse:
        saved = await self._run(
            self._analysis.save,
            current_principal(),
            request.attempt_id,
            convert.external(request),
        )
        return analysis_pb2.SaveBehaviorAnalysisResponse(
            analysis=convert.analysis(saved.analysis), replayed=saved.replayed
        )

    async def AnalyzeAttempt(
        self, request: analysis_pb2.AnalyzeAttemptRequest, context: Context
    ) -> analysis_pb2.AnalyzeAttemptResponse:
        result = await self._run(self._analysis.analyze, current_principal(), request.attempt_id)
        response = analysis_pb2.AnalyzeAttemptResponse(
            integrity_score=float(result.score.integrity),
            penalty=result.score.penalty,
            contributions=[convert.contribution(c) for c in result.score.contributions],
            by_type=[
                analysis_pb2.TypeContribution(event_type=t, penalty=p)
                for t, p in result.score.by_type().items()
            ],
            saved=result.saved,
        )
        if result.current is not None:
            response.current.CopyFrom(convert.analysis(result.current))
        return response

    async def UpdatePerformanceMetrics(
        self, request: analysis_pb2.UpdatePerformanceMetricsRequest, context: Context
    ) -> analysis_pb2.UpdatePerformanceMetricsResponse:
        metrics = await self._run(
            self._analysis.recompute_student, current_principal(), request.student_id
        )
        return analysis_pb2.UpdatePerformanceMetricsResponse(
            performance=exam_convert.performance(metrics)
        )

    async def GetHighRiskSummary(
        self, request: analysis_pb2.GetHighRiskSummaryRequest, context: Context
    ) -> analysis_pb2.GetHighRiskSummaryResponse:
        summary = await self._run(self._analysis.high_risk_summary, current_principal())
        return analysis_pb2.GetHighRiskSummaryResponse(
            by_label=exams_pb2.RiskDistribution(**summary.by_label),
            by_integrity=analysis_pb2.IntegrityBands(**summary.by_integrity),
            most_flagged_exams=[
                analysis_pb2.FlaggedExam(
                    exam_id=str(exam_id), title=title, flagged_count=flagged, total_attempts=total
                )
                for exam_id, title, flagged, total in summary.most_flagged
            ],
            critical_events_last_hour=summary.critical_last_hour,
            critical_events_last_day=summary.critical_last_day,
            critical_events_per_hour_last_day=summary.critical_last_day / 24,
        )
