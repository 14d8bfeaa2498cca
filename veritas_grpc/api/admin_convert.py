"""Audit rows to protobuf messages, and AdminService requests to plain values."""

from __future__ import annotations

import uuid

from google.protobuf import struct_pb2
from veritas.v1 import admin_pb2

from veritas_grpc.api.convert import (
    ROLE_TO_PROTO,
    enum_name,
    optional_time,
    set_time,
    timestamp,
    user,
)
from veritas_grpc.api.exam_convert import ATTEMPT_STATUSES, EXAM_STATUSES
from veritas_grpc.api.job_convert import queue_summary
from veritas_grpc.domain.audit import AuditQuery, StoredAuditEntry
from veritas_grpc.domain.errors import InvalidArgument
from veritas_grpc.domain.exams import AttemptStatus, ExamStatus
from veritas_grpc.domain.identity import Role
from veritas_grpc.domain.ids import canonical_uuid
from veritas_grpc.domain.oversight import AttemptSearch
from veritas_grpc.services.audit_trail import ChainReport
from veritas_grpc.services.data_subjects import ErasureReport, ExportRecord
from veritas_grpc.services.enrolment import ImportReport, IssuedToken, StudentRow
from veritas_grpc.services.oversight import SystemStats
from veritas_grpc.services.user_admin import UserChange, UserDetail, UserQuery

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


# Oversight: SearchAttempts and GetSystemStats ------------------------------------------

ATTEMPT_STATUS_NAMES = {value: status.value for status, value in ATTEMPT_STATUSES.items()}


def _optional_id(value: str, field: str) -> uuid.UUID | None:
    if not value:
        return None
    canonical = canonical_uuid(value)
    if canonical is None:
        raise InvalidArgument.of(field, "must be a UUID")
    return uuid.UUID(canonical)


def attempt_search(request: admin_pb2.SearchAttemptsRequest) -> AttemptSearch:
    status = enum_name(ATTEMPT_STATUS_NAMES, request.status, "status")
    return AttemptSearch(
        student_id=_optional_id(request.student_id, "student_id"),
        exam_id=_optional_id(request.exam_id, "exam_id"),
        status=AttemptStatus(status) if status else None,
        flagged=request.flagged if request.HasField("flagged") else None,
        start_time=optional_time(request, "start_time", "start_time"),
        end_time=optional_time(request, "end_time", "end_time"),
    )


def system_stats(stats: SystemStats) -> admin_pb2.GetSystemStatsResponse:
    figures = stats.figures
    response = admin_pb2.GetSystemStatsResponse(
        analysis_queue=queue_summary(stats.analysis_queue),
        user_counts=[
            admin_pb2.UserCount(role=ROLE_TO_PROTO[Role(role)], active=active, user_count=n)
            for role, active, n in figures.users
        ],
        exam_counts=[
            admin_pb2.ExamCount(status=EXAM_STATUSES[ExamStatus(status)], exam_count=n)
            for status, n in figures.exams
        ],
        attempt_counts=[
            admin_pb2.AttemptCount(status=ATTEMPT_STATUSES[AttemptStatus(status)], attempt_count=n)
            for status, n in figures.attempts
        ],
        integrity_good_count=figures.integrity_good_count,
        integrity_watch_count=figures.integrity_watch_count,
        integrity_at_risk_count=figures.integrity_at_risk_count,
        integrity_unassessed_count=figures.integrity_unassessed_count,
        flagged_attempt_count=figures.flagged_attempt_count,
        last_hour_event_count=figures.last_hour_event_count,
        last_day_event_count=figures.last_day_event_count,
        daily_event_counts=[
            admin_pb2.DailyEventCount(day=day.isoformat(), event_count=n)
            for day, n in figures.daily_event_counts
        ],
        compute_time=timestamp(figures.compute_time),
    )
    if figures.pass_rate is not None:
        response.pass_rate = figures.pass_rate
    return response


# Users: ListUsers, GetUser, UpdateUser -----------------------------------------------

_ROLE_OF_PROTO = {value: role for role, value in ROLE_TO_PROTO.items()}


def user_query(request: admin_pb2.ListUsersRequest) -> UserQuery:
    if request.role and request.role not in _ROLE_OF_PROTO:
        raise InvalidArgument.of("role", "unknown value")
    return UserQuery(
        role=_ROLE_OF_PROTO.get(request.role),
        active=request.active if request.HasField("active") else None,
        text=request.query,
    )


def user_change(request: admin_pb2.UpdateUserRequest) -> UserChange:
    return UserChange(full_name=request.user.full_name, enrollment_id=request.user.enrollment_id)


def user_detail(detail: UserDetail) -> admin_pb2.GetUserResponse:
    response = admin_pb2.GetUserResponse(
        user=user(detail.account),
        open_sessions=[
            admin_pb2.SignInSession(
                id=str(s.id),
                create_time=timestamp(s.created_at),
                expire_time=timestamp(s.expires_at),
            )
            for s in detail.open_sessions
        ],
        deactivate_reason=detail.deactivate_reason or "",
    )
    for throttle in detail.throttles:
        bucket = response.sign_in_throttles.add(
            scope=throttle.scope,
            client_address=throttle.client_address,
            failure_count=throttle.failure_count,
        )
        set_time(bucket, "lock_expire_time", throttle.locked_until)
    set_time(response, "last_sign_in_time", detail.last_sign_in)
    set_time(response, "deactivate_time", detail.deactivated_at)
    return response


# Enrolment: CreateUser, ResetPassword, ImportStudents --------------------------------

PROTO_TO_ROLE = {value: role for role, value in ROLE_TO_PROTO.items()}
IMPORT_OUTCOMES = {
    "created": admin_pb2.IMPORT_OUTCOME_CREATED,
    "unchanged": admin_pb2.IMPORT_OUTCOME_UNCHANGED,
    "updated": admin_pb2.IMPORT_OUTCOME_UPDATED,
    "rejected": admin_pb2.IMPORT_OUTCOME_REJECTED,
}


def requested_role(value: int) -> Role | None:
    """The role of a CreateUserRequest; None when unspecified (the service refuses it)."""
    if value == 0:
        return None
    if value not in PROTO_TO_ROLE:
        raise InvalidArgument.of("role", "unknown value")
    return PROTO_TO_ROLE[value]


def set_password_token(issued: IssuedToken) -> admin_pb2.SetPasswordToken:
    return admin_pb2.SetPasswordToken(token=issued.token, expire_time=timestamp(issued.expires_at))


def student_rows(request: admin_pb2.ImportStudentsRequest) -> list[StudentRow]:
    return [StudentRow(row.email, row.full_name, row.enrollment_id) for row in request.rows]


def import_response(report: ImportReport) -> admin_pb2.ImportStudentsResponse:
    return admin_pb2.ImportStudentsResponse(
        results=[
            admin_pb2.ImportResult(
                index=result.index,
                email=result.email,
                outcome=IMPORT_OUTCOMES[result.outcome],
                reason=result.reason,
                user_id=str(result.user_id) if result.user_id else "",
                set_password=set_password_token(result.set_password)
                if result.set_password
                else None,
            )
            for result in report.results
        ],
        created_count=report.counts["created"],
        unchanged_count=report.counts["unchanged"],
        updated_count=report.counts["updated"],
        rejected_count=report.counts["rejected"],
    )


# Data-subject rights ----------------------------------------------------------------


def export_chunk(records: list[ExportRecord]) -> admin_pb2.ExportStudentDataResponse:
    response = admin_pb2.ExportStudentDataResponse()
    for record in records:
        added = response.records.add(kind=record.kind)
        added.data.update(record.data)
    return response


def erasure_report(report: ErasureReport) -> admin_pb2.EraseStudentResponse:
    return admin_pb2.EraseStudentResponse(
        pseudonym=report.pseudonym,
        erased_event_count=report.erased_event_count,
        erased_analysis_count=report.erased_analysis_count,
        erased_review_count=report.erased_review_count,
        anonymized_attempt_count=report.anonymized_attempt_count,
        pseudonymized_audit_count=report.pseudonymized_audit_count,
    )
