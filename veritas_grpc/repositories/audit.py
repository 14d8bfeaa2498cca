"""The append-only audit trail."""

from __future__ import annotations

from sqlalchemy.orm import Session

from veritas_grpc.db.models import AuditLog
from veritas_grpc.domain.audit import AuditEntry


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
