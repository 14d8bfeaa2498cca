"""veritas.v1.TeacherService: proto in, service call, proto out."""

from __future__ import annotations

import grpc
from veritas.v1 import teacher_pb2, teacher_pb2_grpc

from veritas_grpc.api import analysis_convert, event_convert
from veritas_grpc.api import exam_convert as convert
from veritas_grpc.api.convert import set_time
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
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
    ) -> None:
        self._exams = exams
        self._attempts = attempts
        self._dashboards = dashboards
        self._monitoring = monitoring
        self._analysis = analysis
        self._run = runner.run

    async def CreateExam(
        self, request: teacher_pb2.CreateExamRequest, context: Context
    ) -> teacher_pb2.CreateExamResponse:
        created = await self._run(
            self._exams.create,
            current_principal(),
            convert.draft(request.exam),
            request.request_id,
        )
        return teacher_pb2.CreateExamResponse(
            exam=convert.exam(created.visible, created.rules_locked)
        )

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
        return teacher_pb2.UpdateExamResponse(
            exam=convert.exam(updated.visible, updated.rules_locked)
        )

    async def PublishExam(
        self, request: teacher_pb2.PublishExamRequest, context: Context
    ) -> teacher_pb2.PublishExamResponse:
        moved = await self._run(self._exams.publish, current_principal(), request.exam_id)
        return teacher_pb2.PublishExamResponse(exam=convert.exam(moved.visible, moved.rules_locked))

    async def ArchiveExam(
        self, request: teacher_pb2.ArchiveExamRequest, context: Context
    ) -> teacher_pb2.ArchiveExamResponse:
        moved = await self._run(self._exams.archive, current_principal(), request.exam_id)
        return teacher_pb2.ArchiveExamResponse(exam=convert.exam(moved.visible, moved.rules_locked))

    async def ListExams(
        self, request: teacher_pb2.ListExamsRequest, context: Context
    ) -> teacher_pb2.ListExamsResponse:
        page = await self._run(
            self._exams.list, current_principal(), request.page_size, request.page_token
        )
        locked = await self._run(self._exams.rules_locked, [v.exam.id for v in page.items])
        return teacher_pb2.ListExamsResponse(
            exams=[convert.exam(v, locked.get(v.exam.id, False)) for v in page.items],
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
            convert.ACCESS_FROM_PROTO.get(request.level),
        )
        message = teacher_pb2.ExamGrant(
            exam_id=str(grant.exam_id),
            teacher_id=str(grant.teacher_id),
            level=convert.ACCESS[convert.AccessLevel[grant.level]],
            granter_id=str(grant.granted_by),
        )
        set_time(message, "grant_time", grant.granted_at)
        return teacher_pb2.GrantExamAccessResponse(grant=message)

    async def RevokeExamAccess(
        self, request: teacher_pb2.RevokeExamAccessRequest, context: Context
    ) -> teacher_pb2.RevokeExamAccessResponse:
        await self._run(
            self._exams.revoke, current_principal(), request.exam_id, request.teacher_id
        )
        return teacher_pb2.RevokeExamAccessResponse()

    async def GetTeacherDashboard(
        self, request: teacher_pb2.GetTeacherDashboardRequest, context: Context
    ) -> teacher_pb2.GetTeacherDashboardResponse:
        board = await self._run(self._dashboards.teacher_dashboard, current_principal())
        return teacher_pb2.GetTeacherDashboardResponse(
            exams=[
                teacher_pb2.ExamOverview(
                    exam=convert.exam(o.visible, o.stats.attempt_count > 0),
                    analytics=convert.analytics(o.stats),
                )
                for o in board.exams
            ],
            recent_flagged_attempts=[convert.flagged_attempt(found) for found in board.alerts],
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
        exam, stats = result.overview.visible.exam, result.overview.stats
        return teacher_pb2.GetExamAnalyticsResponse(
            exam=teacher_pb2.ExamHeader(
                id=str(exam.id),
                title=exam.title,
                subject=exam.subject,
                max_points=float(exam.max_score),
            ),
            analytics=convert.analytics(stats),
            risk_distribution=convert.risk_distribution(stats),
            students=[
                teacher_pb2.StudentAttempts(
                    student_id=str(row.student_id),
                    student_name=row.name,
                    attempts=[convert.attempt_score(a) for a in row.attempts],
                )
                for row in result.students.items
            ],
            next_page_token=result.students.next_token,
        )

    async def GetStudentDetail(
        self, request: teacher_pb2.GetStudentDetailRequest, context: Context
    ) -> teacher_pb2.GetStudentDetailResponse:
        detail = await self._run(
            self._dashboards.student_detail, current_principal(), request.student_id
        )
        return teacher_pb2.GetStudentDetailResponse(
            student=convert.student_profile(detail.user, detail.profile),
            performance=convert.performance(detail.metrics),
            attempts=[convert.attempt_record(found) for found in detail.attempts],
        )

    async def GradeAttempt(
        self, request: teacher_pb2.GradeAttemptRequest, context: Context
    ) -> teacher_pb2.GradeAttemptResponse:
        found = await self._run(
            self._attempts.grade, current_principal(), request.attempt_id, request.points
        )
        return teacher_pb2.GradeAttemptResponse(attempt=convert.attempt_record(found))

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
        found = await self._run(
            self._analysis.review_event,
            current_principal(),
            request.attempt_id,
            request.event_id,
            analysis_convert.DECISIONS.get(request.decision),
            request.note,
        )
        return teacher_pb2.ReviewEventResponse(attempt=convert.attempt_record(found))

    async def ReviewAttempt(
        self, request: teacher_pb2.ReviewAttemptRequest, context: Context
    ) -> teacher_pb2.ReviewAttemptResponse:
        found = await self._run(
            self._analysis.review_attempt,
            current_principal(),
            request.attempt_id,
            analysis_convert.OUTCOMES.get(request.outcome),
            request.note,
        )
        return teacher_pb2.ReviewAttemptResponse(attempt=convert.attempt_record(found))

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
            attempts=[convert.attempt_record(found) for found in page.items],
            next_page_token=page.next_token,
        )
