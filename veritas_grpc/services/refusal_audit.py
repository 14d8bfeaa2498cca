"""Refusals the audit trail keeps: a signed-in caller asked for a resource by its id and
was answered NOT_FOUND or PERMISSION_DENIED. Someone probing for other people's attempts
or accounts leaves a trace, whether the resource exists or not.

Noting a refusal costs no I/O on the call's path: refusals wait in memory and are
written in batches (one transaction, one turn at the chain's head, per flush), so a
caller who sends thousands of refused requests cannot make each one a serialized write.
Past MAX_PENDING between two flushes, refusals are only counted, and the next flush
writes one row saying how many were not kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from veritas_grpc.domain.audit import AuditEntry
from veritas_grpc.domain.identity import Principal
from veritas_grpc.services.unit_of_work import UnitOfWorkFactory

MAX_PENDING = 1000
# A request field naming a resource, by its name: the resource's type.
RESOURCE_FIELDS = {
    "attempt_id": "attempt",
    "exam_id": "exam",
    "student_id": "user",
    "teacher_id": "user",
    "user_id": "user",
    "event_id": "event",
    "allowance_id": "allowance",
}


@dataclass(frozen=True)
class Refusal:
    actor: Principal
    method: str
    code: str  # NOT_FOUND or PERMISSION_DENIED
    # The resource ids the request named, by field name (see RESOURCE_FIELDS).
    resources: dict[str, str]
    peer: str | None
    request_id: str | None

    def entry(self) -> AuditEntry:
        first_field, first_id = next(iter(self.resources.items()))
        return AuditEntry(
            action="access.refused",
            outcome="denied",
            actor_id=self.actor.user_id,
            actor_role=self.actor.role.value,
            resource_type=RESOURCE_FIELDS[first_field],
            resource_id=first_id,
            peer=self.peer,
            request_id=self.request_id,
            details={"method": self.method, "code": self.code, "named": self.resources},
        )


@dataclass
class RefusalAudit:
    uow_factory: UnitOfWorkFactory
    max_pending: int = MAX_PENDING
    _pending: list[Refusal] = field(default_factory=list)
    _not_kept: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, refusal: Refusal) -> None:
        """Keep a refusal for the next flush; called on the event loop, never blocks."""
        with self._lock:
            if len(self._pending) < self.max_pending:
                self._pending.append(refusal)
            else:
                self._not_kept += 1

    def flush(self) -> int:
        """Write the refusals noted since the last flush; how many rows were written."""
        with self._lock:
            pending, self._pending = self._pending, []
            not_kept, self._not_kept = self._not_kept, 0
        if not pending and not not_kept:
            return 0
        entries = [refusal.entry() for refusal in pending]
        if not_kept:
            entries.append(
                AuditEntry(
                    action="access.refused",
                    outcome="denied",
                    details={"not_kept_count": not_kept, "reason": "too many refusals at once"},
                )
            )
        try:
            with self.uow_factory() as uow:
                for entry in entries:
                    uow.audit.append(entry)
                uow.commit()
        except Exception:
            with self._lock:  # kept for the next flush, within the same bound
                self._pending = (pending + self._pending)[: self.max_pending]
                self._not_kept += not_kept
            raise
        return len(entries)
