"""Domain values to protobuf messages and back. No logic beyond the mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from veritas.v1 import auth_pb2, common_pb2, resources_pb2

from veritas_grpc.domain.exams import DropoutLabel
from veritas_grpc.domain.identity import AccountView, IssuedTokens, Role

# Enums shared by several services, between their proto values and domain names.
SEVERITY_NAMES = {
    common_pb2.SEVERITY_INFO: "INFO",
    common_pb2.SEVERITY_WARNING: "WARNING",
    common_pb2.SEVERITY_CRITICAL: "CRITICAL",
}
SEVERITIES = {name: value for value, name in SEVERITY_NAMES.items()}
LABELS = {
    DropoutLabel.SAFE: common_pb2.DROPOUT_LABEL_SAFE,
    DropoutLabel.INCAPABLE: common_pb2.DROPOUT_LABEL_INCAPABLE,
    DropoutLabel.COPY: common_pb2.DROPOUT_LABEL_COPY,
    DropoutLabel.NO_INTEREST: common_pb2.DROPOUT_LABEL_NO_INTEREST,
}
LABEL_NAMES = {value: name for name, value in LABELS.items()}

ROLE_TO_PROTO = {
    Role.STUDENT: common_pb2.ROLE_STUDENT,
    Role.TEACHER: common_pb2.ROLE_TEACHER,
    Role.ADMIN: common_pb2.ROLE_ADMIN,
    Role.SERVICE: common_pb2.ROLE_SERVICE,
}


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def user(view: AccountView) -> resources_pb2.User:
    return resources_pb2.User(
        id=str(view.id),
        email=view.email,
        full_name=view.full_name,
        role=ROLE_TO_PROTO[view.role],
        active=view.active,
        create_time=timestamp(view.created_at),
        enrollment_id=view.enrollment_id or "",
    )


def token_pair(tokens: IssuedTokens) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=tokens.access_token,
        access_token_expire_time=timestamp(tokens.access_expires_at),
        refresh_token=tokens.refresh_token,
        refresh_token_expire_time=timestamp(tokens.refresh_expires_at),
        token_type="Bearer",
    )


def optional_time(message: object, field: str) -> datetime | None:
    """A Timestamp field of a request, or None when the client left it unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return getattr(message, field).ToDatetime(tzinfo=UTC)


def set_time(message: object, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).FromDatetime(value)


def optional_float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def label(value: DropoutLabel | None) -> int:
    return LABELS[value] if value else common_pb2.DROPOUT_LABEL_UNSPECIFIED
