"""What one audit row says: who did what to which resource, with what outcome."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from veritas_grpc.domain.audit_chain import AuditContent


@dataclass(frozen=True)
class AuditEntry:
    action: str
    outcome: str  # success | failure | denied
    actor_id: uuid.UUID | None = None
    actor_role: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    peer: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditQuery:
    """Which rows to read: every condition given must hold."""

    actor_id: str | None = None  # a UUID in 8-4-4-4-12 form
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class StoredAuditEntry:
    row_id: int
    sequence: int | None  # None: written before the chain began
    content: AuditContent

    def as_document(self) -> dict[str, Any]:
        """The row as plain JSON values, for `veritas audit query` and exports."""
        content = self.content
        return {
            "sequence": self.sequence,
            "occur_time": content.occurred_at.isoformat(),
            "action": content.action,
            "outcome": content.outcome,
            "actor_id": content.actor_id,
            "actor_role": content.actor_role,
            "resource_type": content.resource_type,
            "resource_id": content.resource_id,
            "peer": content.peer,
            "request_id": content.request_id,
            "details": dict(content.details),
        }
