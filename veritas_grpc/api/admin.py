"""veritas.v1.AdminService: proto in, service call, proto out."""

from __future__ import annotations

import grpc
from veritas.v1 import admin_pb2, admin_pb2_grpc

from veritas_grpc.api import admin_convert as convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.audit_trail import AuditTrail

Context = grpc.aio.ServicerContext


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, audit_trail: AuditTrail, runner: BlockingRunner) -> None:
        self._audit_trail = audit_trail
        self._run = runner.run

    async def QueryAuditLog(
        self, request: admin_pb2.QueryAuditLogRequest, context: Context
    ) -> admin_pb2.QueryAuditLogResponse:
        page = await self._run(
            self._audit_trail.query,
            current_principal(),
            convert.audit_query(request),
            request.page_size,
            request.page_token,
        )
        return admin_pb2.QueryAuditLogResponse(
            records=[convert.audit_record(entry) for entry in page.items],
            next_page_token=page.next_token,
        )

    async def VerifyAuditLog(
        self, request: admin_pb2.VerifyAuditLogRequest, context: Context
    ) -> admin_pb2.VerifyAuditLogResponse:
        report = await self._run(self._audit_trail.verify, current_principal())
        return convert.chain_report(report)
