"""AdminService, enrolment: CreateUser, ResetPassword, ImportStudents (joined into the
one AdminService servicer by api/admin.py admin_servicer)."""

from __future__ import annotations

import grpc
from veritas.v1 import admin_pb2

from veritas_grpc.api import admin_convert as convert
from veritas_grpc.api.convert import user
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.enrolment import EnrolmentService

Context = grpc.aio.ServicerContext


class EnrolmentServicer:
    def __init__(self, enrolment: EnrolmentService, runner: BlockingRunner) -> None:
        self._enrolment = enrolment
        self._run = runner.run

    async def CreateUser(
        self, request: admin_pb2.CreateUserRequest, context: Context
    ) -> admin_pb2.CreateUserResponse:
        created = await self._run(
            self._enrolment.create_user,
            current_principal(),
            request.email,
            request.full_name,
            convert.requested_role(request.role),
        )
        return admin_pb2.CreateUserResponse(
            user=user(created.account),
            set_password=convert.set_password_token(created.set_password),
        )

    async def ResetPassword(
        self, request: admin_pb2.ResetPasswordRequest, context: Context
    ) -> admin_pb2.ResetPasswordResponse:
        issued = await self._run(
            self._enrolment.reset_password, current_principal(), request.user_id
        )
        return admin_pb2.ResetPasswordResponse(set_password=convert.set_password_token(issued))

    async def ImportStudents(
        self, request: admin_pb2.ImportStudentsRequest, context: Context
    ) -> admin_pb2.ImportStudentsResponse:
        report = await self._run(
            self._enrolment.import_students, current_principal(), convert.student_rows(request)
        )
        return convert.import_response(report)
