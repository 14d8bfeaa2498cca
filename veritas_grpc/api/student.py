"""veritas.v1.StudentService: proto in, service call, proto out."""

from __future__ import annotations

import grpc
from veritas.v1 import student_pb2, student_pb2_grpc

from veritas_grpc.api import exam_convert as convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.attempts import AttemptService
from veritas_grpc.services.dashboards import DashboardService

Context = grpc.aio.ServicerContext


class StudentServicer(student_pb2_grpc.StudentServiceServicer):
    def __init__(
        self, attempts: AttemptService, dashboards: DashboardService, runner: BlockingRunner
    ) -> None:
        self._attempts = attempts
        self._dashboards = dashboards
        self._run = runner.run

    async def GetStudentDashboard(
        self, request: student_pb2.GetStudentDashboardRequest, context: Context
    ) -> student_pb2.GetStudentDashboardResponse:
        board = await self._run(self._dashboards.student_dashboard, current_principal())
        return convert.student_dashboard(board)

    async def ListAvailableExams(
        self, request: student_pb2.ListAvailableExamsRequest, context: Context
    ) -> student_pb2.ListAvailableExamsResponse:
        page = await self._run(
            self._attempts.available, current_principal(), request.page_size, request.page_token
        )
        return student_pb2.ListAvailableExamsResponse(
            exams=[convert.available_exam(item) for item in page.items],
            next_page_token=page.next_token,
        )

    async def StartAttempt(
        self, request: student_pb2.StartAttemptRequest, context: Context
    ) -> student_pb2.StartAttemptResponse:
        started = await self._run(self._attempts.start, current_principal(), request.exam_id)
        return student_pb2.StartAttemptResponse(attempt=convert.student_attempt(started))

    async def SubmitAttempt(
        self, request: student_pb2.SubmitAttemptRequest, context: Context
    ) -> student_pb2.SubmitAttemptResponse:
        submitted = await self._run(self._attempts.submit, current_principal(), request.attempt_id)
        return student_pb2.SubmitAttemptResponse(attempt=convert.student_attempt(submitted))

    async def AbandonAttempt(
        self, request: student_pb2.AbandonAttemptRequest, context: Context
    ) -> student_pb2.AbandonAttemptResponse:
        abandoned = await self._run(self._attempts.abandon, current_principal(), request.attempt_id)
        return student_pb2.AbandonAttemptResponse(attempt=convert.student_attempt(abandoned))

    async def GetAttempt(
        self, request: student_pb2.GetAttemptRequest, context: Context
    ) -> student_pb2.GetAttemptResponse:
        own = await self._run(self._attempts.get_own, current_principal(), request.attempt_id)
        return student_pb2.GetAttemptResponse(
            attempt=convert.student_attempt(own.found, own.recommendations),
            readiness=convert.readiness(own.readiness) if own.readiness else None,
        )
