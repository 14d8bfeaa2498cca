"""Audit rows for use cases: who did what to which resource, with what outcome."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from veritas_grpc.domain.audit import AuditEntry
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.observability import current_call
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory


def record(
    uow: UnitOfWork,
    action: str,
    outcome: str,
    *,
    actor: Principal | None = None,
    actor_id: uuid.UUID | None = None,
    actor_role: Role | None = None,
    resource_type: str | None = None,
    resource_id: object | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    call = current_call()
    if actor is not None:
        actor_id, actor_role = actor.user_id, actor.role
    uow.audit.append(
        AuditEntry(
            action=action,
            outcome=outcome,
            actor_id=actor_id,
            actor_role=actor_role.value if actor_role else None,
            resource_type=resource_type,
            resource_id=None if resource_id is None else str(resource_id),
            peer=call.peer if call else None,
            request_id=call.request_id if call else None,
            details=details or {},
        )
    )


@dataclass(frozen=True)
class _Asked:
    action: str
    resource_type: str | None
    resource_id: object | None
    details: dict[str, Any] | None


@dataclass
class AuditedRead:
    """A read of students' data: its unit of work, and the audit row it asks for."""

    uow: UnitOfWork
    asked: _Asked | None = None

    def audit(
        self,
        action: str,
        resource_type: str | None = None,
        resource_id: object | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.asked = _Asked(action, resource_type, resource_id, details)


@contextmanager
def audited_read(
    reads: UnitOfWorkFactory, writes: UnitOfWorkFactory, actor: Principal
) -> Iterator[AuditedRead]:
    """A read whose audit row (if it asks for one) is committed on the primary before
    the answer goes: in the read's own transaction when that can take it
    (UnitOfWork.audits_here; one transaction fewer per call), else in one of its own
    once the read's has ended (the read came from the replica, READ_SOURCE_REPLICA, or
    from a snapshot). A read that raises is not audited."""
    with reads() as uow:
        read = AuditedRead(uow)
        yield read
        asked = read.asked
        if asked is None:
            return
        if uow.audits_here():
            _record_success(uow, actor, asked)
            uow.commit()
            return
    with writes() as uow:
        _record_success(uow, actor, asked)
        uow.commit()


def _record_success(uow: UnitOfWork, actor: Principal, asked: _Asked) -> None:
    record(
        uow,
        asked.action,
        "success",
        actor=actor,
        resource_type=asked.resource_type,
        resource_id=asked.resource_id,
        details=asked.details,
    )
