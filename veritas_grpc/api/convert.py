"""Domain values to protobuf messages and back. No logic beyond the mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from veritas.v1 import auth_pb2, common_pb2, resources_pb2

from veritas_grpc.domain.errors import InvalidArgument
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


# The Timestamps a datetime can hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
UNREPRESENTABLE_TIME = "not a time between the years 1 and 9999"
# An enum value the client sent that this server does not know (a newer client's?).
UNKNOWN = "?"


def representable(stamp: Timestamp) -> bool:
    return (
        MIN_TIMESTAMP_SECONDS <= stamp.seconds <= MAX_TIMESTAMP_SECONDS
        and 0 <= stamp.nanos <= 999_999_999
    )


def optional_time(message: object, field: str, path: str) -> datetime | None:
    """A Timestamp field of a request, or None when the client left it unset; path is
    the field's path from the request, for the violation of a time out of range."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp = getattr(message, field)
    if not representable(stamp):
        raise InvalidArgument.of(path, UNREPRESENTABLE_TIME)
    return stamp.ToDatetime(tzinfo=UTC)


def enum_name(names: dict[int, str], value: int, path: str) -> str | None:
    """The domain name of a request's enum value; None when unspecified (0)."""
    if value == 0:
        return None
    if value not in names:
        raise InvalidArgument.of(path, "unknown value")
    return names[value]


def set_time(message: object, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).FromDatetime(value)


def optional_float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def label(value: DropoutLabel | None) -> int:
    return LABELS[value] if value else common_pb2.DROPOUT_LABEL_UNSPECIFIED
