"""Identifiers arriving as strings."""

from __future__ import annotations

import re
import uuid

from veritas_grpc.domain.errors import InvalidArgument

# The 8-4-4-4-12 form only. uuid.UUID() alone is lenient: it takes braces, "urn:uuid:",
# no hyphens, and (through int()) surrounding spaces, underscores and a sign. Matched
# with fullmatch: `$` would also match before a trailing newline.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


_LOWER_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: str) -> str | None:
    """The lower-case form of a UUID written exactly in 8-4-4-4-12 form, else None.
    Ingestion checks two per event: ids already lower-case (agents' usual) are returned
    as they are, without a copy."""
    if _LOWER_UUID.fullmatch(value):
        return value
    return value.lower() if _UUID.fullmatch(value) else None


def parse_id(value: str, field: str) -> uuid.UUID:
    """A UUID from a request field; INVALID_ARGUMENT naming the field when it is not one."""
    if not value:
        raise InvalidArgument.of(field, "is required")
    canonical = canonical_uuid(value)
    if canonical is None:
        raise InvalidArgument.of(field, "must be a UUID")
    return uuid.UUID(canonical)
