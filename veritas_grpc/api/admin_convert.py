"""Audit rows to protobuf messages, and AdminService requests to plain values."""

from __future__ import annotations

from google.protobuf import struct_pb2
from veritas.v1 import admin_pb2

from veritas_grpc.api.convert import ROLE_TO_PROTO, enum_name, optional_time, timestamp
from veritas_grpc.domain.audit import AuditQuery, StoredAuditEntry
from veritas_grpc.domain.identity import Role
from veritas_grpc.services.audit_trail import ChainReport

OUTCOMES = {
    admin_pb2.AUDIT_OUTCOME_SUCCESS: "success",
    admin_pb2.AUDIT_OUTCOME_FAILURE: "failure",
    admin_pb2.AUDIT_OUTCOME_DENIED: "denied",
}
OUTCOME_VALUES = {name: value for value, name in OUTCOMES.items()}


def audit_query(request: admin_pb2.QueryAuditLogRequest) -> AuditQuery:
    return AuditQuery(
        actor_id=request.actor_id or None,
        action=request.action or None,
        resource_type=request.resource_type or None,
        resource_id=request.resource_id or None,
        outcome=enum_name(OUTCOMES, request.outcome, "outcome"),
        start_time=optional_time(request, "start_time", "start_time"),
        end_time=optional_time(request, "end_time", "end_time"),
    )


def audit_record(entry: StoredAuditEntry) -> admin_pb2.AuditRecord:
    content = entry.content
    details = struct_pb2.Struct()
    details.update(dict(content.details))
    return admin_pb2.AuditRecord(
        sequence=entry.sequence or 0,
        occur_time=timestamp(content.occurred_at),
        action=content.action,
        outcome=OUTCOME_VALUES.get(content.outcome, admin_pb2.AUDIT_OUTCOME_UNSPECIFIED),
        actor_id=content.actor_id or "",
        actor_role=ROLE_TO_PROTO[Role(content.actor_role)] if content.actor_role else 0,
        resource_type=content.resource_type or "",
        resource_id=content.resource_id or "",
        peer=content.peer or "",
        request_id=content.request_id or "",
        details=details,
    )


def chain_report(report: ChainReport) -> admin_pb2.VerifyAuditLogResponse:
    broken = report.verdict.broken
    return admin_pb2.VerifyAuditLogResponse(
        intact=report.intact,
        checked_count=report.verdict.checked_count,
        head_sequence=report.head_sequence,
        head_hash=report.head_hash.hex(),
        broken_sequence=broken.sequence if broken else 0,
        broken_reason=broken.reason if broken else "",
    )
