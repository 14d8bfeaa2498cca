"""Event exemptions: the event types an attempt's student may not be held to
(AllowanceTerms.event_exemption). An exemption applies to an attempt unless it was
revoked before the attempt started, so a grant reaches the exam's ended attempts too
and a revoke changes only attempts started after it. Read at each use, never copied
onto stored rows."""

from __future__ import annotations

import uuid

from veritas_grpc.services.unit_of_work import UnitOfWork


def exempt_types(uow: UnitOfWork, attempt_id: uuid.UUID) -> frozenset[str]:
    """The event types exempt for the attempt (see the module's rule)."""
    return uow.allowances.exempt_types_of_attempts([attempt_id]).get(attempt_id, frozenset())
