"""veritas.v1.AdminService: proto in, service call, proto out.

The service is large, so its RPCs live in servicers by area (this file: the audit
trail; admin_users.py, admin_enrolment.py, admin_oversight.py, admin_data_subjects.py),
and `admin_servicer` joins them into the one servicer grpc registers.
"""

from __future__ import annotations

import grpc
from veritas.v1 import admin_pb2, admin_pb2_grpc

from veritas_grpc.api import admin_convert as convert
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.services.audit_trail import AuditTrail

Context = grpc.aio.ServicerContext
METHOD_NAMES = tuple(admin_pb2.DESCRIPTOR.services_by_name["AdminService"].methods_by_name)


def admin_servicer(*parts: object) -> admin_pb2_grpc.AdminServiceServicer:
    """One servicer answering each RPC with the part that implements it. A part must
    not implement an RPC another part implements: that would be a wiring mistake."""
    joined = admin_pb2_grpc.AdminServiceServicer()
    for part in parts:
        for name in METHOD_NAMES:
            if name in type(part).__dict__:
                if name in joined.__dict__:
                    raise ValueError(f"AdminService/{name} is implemented twice")
                setattr(joined, name, getattr(part, name))
    return joined


class AuditTrailServicer:
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
