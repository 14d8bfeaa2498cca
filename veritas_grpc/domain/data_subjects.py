"""Data-subject rights: who is erased under which pseudonym, and what of an audit row
an erasure rewrites. Pure rules; the erasure itself is services/data_subjects.py."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from veritas_grpc.domain.audit_chain import AuditContent

PSEUDONYM_PREFIX = "erased-"
PSEUDONYM_HEX_CHARS = 24
# The anonymous shell an erased account becomes keeps a unique, undeliverable address.
ERASED_EMAIL_DOMAIN = "erased.invalid"
# A password hash bcrypt never matches: the shell cannot sign in.
UNUSABLE_PASSWORD_HASH = "!erased"
# Details keys that hold the client's network address when the student was the actor.
CLIENT_KEYS = ("client",)
EXPORT_KINDS = ("profile", "attempt", "event", "analysis", "review", "audit")


def pseudonym_key(chain_key: bytes) -> bytes:
    """A key of its own for pseudonyms, derived from the audit chain's key."""
    return hmac.new(chain_key, b"veritas pseudonym v1", hashlib.sha256).digest()


def pseudonym(key: bytes, user_id: uuid.UUID) -> str:
    """Deterministic: every row of one student maps to the same pseudonym, which only
    the server key can compute from the id."""
    digest = hmac.new(key, user_id.bytes, hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]


def pseudonym_uuid(name: str) -> uuid.UUID:
    """The pseudonym as a UUID, for columns that hold ids (audit_logs.actor_id)."""
    return uuid.UUID(bytes=hashlib.sha256(name.encode()).digest()[:16], version=4)


@dataclass(frozen=True)
class Subject:
    """The identifying fields of one student, as stored before the erasure."""

    user_id: uuid.UUID
    email: str
    full_name: str
    enrollment_id: str

    @property
    def identifiers(self) -> tuple[str, ...]:
        """The values whose every occurrence in an audit row is replaced (lower case)."""
        values = (str(self.user_id), self.email, self.enrollment_id, self.full_name)
        return tuple(v.lower() for v in values if v and len(v.strip()) >= 2)


def redacted(content: AuditContent, subject: Subject, name: str) -> AuditContent | None:
    """The row with the subject's identifying fields replaced by the pseudonym; None
    when there is nothing of them in it. As the actor, the student's network address
    (peer, details.client) goes too; someone else's (an admin reading their data) stays."""
    pattern = re.compile("|".join(re.escape(v) for v in subject.identifiers), re.IGNORECASE)
    as_actor = content.actor_id == str(subject.user_id)
    details: Mapping[str, Any] = content.details
    if as_actor:
        details = {k: v for k, v in details.items() if k not in CLIENT_KEYS}
    changed = replace(
        content,
        actor_id=str(pseudonym_uuid(name)) if as_actor else content.actor_id,
        peer=None if as_actor else content.peer,
        resource_id=_scrub(content.resource_id, pattern, name),
        details=_scrub(dict(details), pattern, name),
    )
    return None if changed == content else changed


def _scrub(value: Any, pattern: re.Pattern[str], name: str) -> Any:
    if isinstance(value, str):
        return pattern.sub(name, value)
    if isinstance(value, dict):
        return {_scrub(k, pattern, name): _scrub(v, pattern, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, pattern, name) for v in value]
    return value


def json_safe(value: Any) -> Any:
    """A stored value as JSON (export records): ids and times as strings, exact
    decimals as numbers, bytes as hex."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value
