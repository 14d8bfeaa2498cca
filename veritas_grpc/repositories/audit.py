"""The append-only audit trail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from veritas_grpc.db.models import AuditLog


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


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def append(self, entry: AuditEntry) -> None:
        self._session.add(
            AuditLog(
                action=entry.action,
                outcome=entry.outcome,
                actor_id=entry.actor_id,
                actor_role=entry.actor_role,
                resource_type=entry.resource_type,
                resource_id=entry.resource_id,
                peer=entry.peer,
                request_id=entry.request_id,
                details=entry.details,
            )
        )
        self._session.flush()

    def recent(self, action: str | None = None, limit: int = 100) -> list[AuditLog]:
        query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
        if action is not None:
            query = query.where(AuditLog.action == action)
        return list(self._session.scalars(query))
