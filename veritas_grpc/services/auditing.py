"""Audit rows for use cases: who did what to which resource, with what outcome."""

from __future__ import annotations

import uuid
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


def record_read(
    writes: UnitOfWorkFactory,
    actor: Principal,
    action: str,
    resource_type: str,
    resource_id: object,
) -> None:
    """A successful read of students' data, audited in a transaction of its own on the
    primary: the read itself may have come from the replica (READ_SOURCE_REPLICA)."""
    with writes() as uow:
        record(
            uow,
            action,
            "success",
            actor=actor,
            resource_type=resource_type,
            resource_id=resource_id,
        )
        uow.commit()
