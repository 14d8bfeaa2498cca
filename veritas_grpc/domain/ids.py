"""Identifiers arriving as strings."""

from __future__ import annotations

import uuid

from veritas_grpc.domain.errors import InvalidArgument


def parse_id(value: str, field: str) -> uuid.UUID:
    """A UUID from a request field; INVALID_ARGUMENT naming the field when it is not one."""
    if not value:
        raise InvalidArgument.of(field, "is required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument.of(field, "must be a UUID") from None
