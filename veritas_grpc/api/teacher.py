"""veritas.v1.TeacherService: proto in, service call, proto out."""

from __future__ import annotations

import grpc
from veritas.v1 import teacher_pb2, teacher_pb2_grpc

from veritas_grpc.api import allowance_convert, analysis_convert, event_convert
from veritas_grpc.api import exam_convert as convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.allowances import AllowanceService
from veritas_grpc.services.analysis import AnalysisService
from veritas_grpc.services.attempts import AttemptService
from veritas_grpc.services.dashboards import DashboardService
from veritas_grpc.services.exams import ExamService
from veritas_grpc.services.monitoring import MonitoringService

Context = grpc.aio.ServicerContext


class TeacherServicer(teacher_pb2_grpc.TeacherServiceServicer):
    def __init__(
        self,
        exams: ExamService,
        attempts: AttemptService,
        dashboards: DashboardService,
        monitoring: MonitoringService,
        analysis: AnalysisService,
        runner: BlockingRunner,
        allowances: AllowanceService,
    ) -> None:
        self._exams = exams
        self._attempts = attempts
        self._dashboards = dashboards
        self._monitoring = monitoring
        self._analysis = analysis
        self._run = runner.run
        self._allowances = allowances

    async def CreateExam(
        self, request: teacher_pb2.CreateExamRequest, context: Context
    ) -> teacher_pb2.CreateExamResponse:
        created = await self._run(
            self._exams.create,
            current_principal(),
            convert.draft(request.exam),
            request.request_id,
        )
        return teacher_pb2.CreateExamResponse(exam=convert.exam(created))

    async def UpdateExam(
        self, request: teacher_pb2.UpdateExamRequest, context: Context
    ) -> teacher_pb2.UpdateExamResponse:
        updated = await self._run(
            self._exams.update,
            current_principal(),
            request.exam.id,
            convert.draft(request.exam),
            convert.update_paths(request),
        )
        return teacher_pb2.UpdateExamResponse(exam=convert.exam(updated))

    async def PublishExam(
        self, request: teacher_pb2.PublishExamRequest, context: Context
    ) -> teacher_pb2.PublishExamResponse:
        moved = await self._run(self._exams.publish, current_principal(), request.exam_id)
        return teacher_pb2.PublishExamResponse(exam=convert.exam(moved))

    async def ArchiveExam(
        self, request: teacher_pb2.ArchiveExamRequest, context: Context
    ) -> teacher_pb2.ArchiveExamResponse:
        moved = await self._run(self._exams.archive, current_principal(), request.exam_id)
        return teacher_pb2.ArchiveExamResponse(exam=convert.exam(moved))

    async def ListExams(
        self, request: teacher_pb2.ListExamsRequest, context: Context
    ) -> teacher_pb2.ListExamsResponse:
        page = await self._run(
            self._exams.list, current_principal(), request.page_size, request.page_token
        )
        return teacher_pb2.ListExamsResponse(
            exams=[convert.exam(view) for view in page.items],
            next_page_token=page.next_token,
        )

    async def GrantExamAccess(
        self, request: teacher_pb2.GrantExamAccessRequest, context: Context
    ) -> teacher_pb2.GrantExamAccessResponse:
        grant = await self._run(
            self._exams.grant,
            current_principal(),
            request.exam_id,
            request.teacher_id,
            convert.ACCESS_FROM_PROTO.get(request.access_level),
        )
        return teacher_pb2.GrantExamAccessResponse(grant=convert.grant(grant))

    async def RevokeExamAccess(
        self, request: teacher_pb2.RevokeExamAccessRequest, context: Context
    ) -> teacher_pb2.RevokeExamAccessResponse:
        await self._run(
            self._exams.revoke, current_principal(), request.exam_id, request.teacher_id
        )
        return teacher_pb2.RevokeExamAccessResponse()

    async def GrantAllowance(
        self, request: teacher_pb2.GrantAllowanceRequest, context: Context
    ) -> teacher_pb2.GrantAllowanceResponse:
        granted = await self._run(
            self._allowances.grant,
            current_principal(),
            request.exam_id,
            request.student_id,
            allowance_convert.terms(request.allowance),
            request.note,
            request.request_id,
        )
        return teacher_pb2.GrantAllowanceResponse(
            allowance=allowance_convert.allowance(granted.allowance),
            extended_attempts=[convert.attempt_record(view) for view in granted.extended_attempts],
        )

    async def ListAllowances(
        self, request: teacher_pb2.ListAllowancesRequest, context: Context
    ) -> teacher_pb2.ListAllowancesResponse:
        page = await self._run(
            self._allowances.list,
            current_principal(),
            request.exam_id,
            request.page_size,
            request.page_token,
        )
        return teacher_pb2.ListAllowancesResponse(
            allowances=[allowance_convert.allowance(view) for view in page.items],
            next_page_token=page.next_token,
        )

    async def RevokeAllowance(
        self, request: teacher_pb2.RevokeAllowanceRequest, context: Context
    ) -> teacher_pb2.RevokeAllowanceResponse:
        revoked = await self._run(
            self._allowances.revoke, current_principal(), request.allowance_id
        )
        return teacher_pb2.RevokeAllowanceResponse(allowance=allowance_convert.allowance(revoked))

    async def GetTeacherDashboard(
        self, request: teacher_pb2.GetTeacherDashboardRequest, context: Context
    ) -> teacher_pb2.GetTeacherDashboardResponse:
        board = await self._run(self._dashboards.teacher_dashboard, current_principal())
        return teacher_pb2.GetTeacherDashboardResponse(
            exams=[
                teacher_pb2.ExamOverview(
                    exam=convert.exam(overview.exam),
                    analytics=convert.analytics(overview.analytics),
                )
                for overview in board.exams
            ],
            recent_flagged_attempts=[convert.flagged_attempt(view) for view in board.alerts],
        )

    async def GetExamAnalytics(
        self, request: teacher_pb2.GetExamAnalyticsRequest, context: Context
    ) -> teacher_pb2.GetExamAnalyticsResponse:
        result = await self._run(
            self._dashboards.exam_analytics,
            current_principal(),
            request.exam_id,
            request.page_size,
            request.page_token,
        )
        overview = result.overview
        return teacher_pb2.GetExamAnalyticsResponse(
            exam=convert.exam_header(overview.exam),
            analytics=convert.analytics(overview.analytics),
            risk_distribution=convert.risk_counts(overview.analytics.by_label),
            students=[convert.student_attempts(row) for row in result.students.items],
            next_page_token=result.students.next_token,
        )

    async def GetStudentDetail(
        self, request: teacher_pb2.GetStudentDetailRequest, context: Context
    ) -> teacher_pb2.GetStudentDetailResponse:
        detail = await self._run(
            self._dashboards.student_detail, current_principal(), request.student_id
        )
        return teacher_pb2.GetStudentDetailResponse(
            student=convert.student_profile(detail.profile),
            performance=convert.performance(detail.performance),
            attempts=[convert.attempt_record(view) for view in detail.attempts],
        )

    async def GradeAttempt(
        self, request: teacher_pb2.GradeAttemptRequest, context: Context
    ) -> teacher_pb2.GradeAttemptResponse:
        graded = await self._run(
            self._attempts.grade, current_principal(), request.attempt_id, request.points
        )
        return teacher_pb2.GradeAttemptResponse(attempt=convert.attempt_record(graded))

    async def GetAttemptMonitoring(
        self, request: teacher_pb2.GetAttemptMonitoringRequest, context: Context
    ) -> teacher_pb2.GetAttemptMonitoringResponse:
        view = await self._run(
            self._monitoring.attempt_monitoring,
            current_principal(),
            request.attempt_id,
            request.timeline_page_size,
        )
        return event_convert.attempt_monitoring(view)

    async def ReviewEvent(
        self, request: teacher_pb2.ReviewEventRequest, context: Context
    ) -> teacher_pb2.ReviewEventResponse:
        reviewed = await self._run(
            self._analysis.review_event,
            current_principal(),
            request.attempt_id,
            request.event_id,
            analysis_convert.DECISIONS.get(request.decision),
            request.note,
        )
        return teacher_pb2.ReviewEventResponse(attempt=convert.attempt_record(reviewed))

    async def ReviewAttempt(
        self, request: teacher_pb2.ReviewAttemptRequest, context: Context
    ) -> teacher_pb2.ReviewAttemptResponse:
        reviewed = await self._run(
            self._analysis.review_attempt,
            current_principal(),
            request.attempt_id,
            analysis_convert.OUTCOMES.get(request.outcome),
            request.note,
        )
        return teacher_pb2.ReviewAttemptResponse(attempt=convert.attempt_record(reviewed))

    async def ListFlaggedAttempts(
        self, request: teacher_pb2.ListFlaggedAttemptsRequest, context: Context
    ) -> teacher_pb2.ListFlaggedAttemptsResponse:
        page = await self._run(
            self._dashboards.flagged,
            current_principal(),
            request.exam_id,
            request.page_size,
            request.page_token,
        )
        return teacher_pb2.ListFlaggedAttemptsResponse(
            attempts=[convert.attempt_record(view) for view in page.items],
            next_page_token=page.next_token,
        )
