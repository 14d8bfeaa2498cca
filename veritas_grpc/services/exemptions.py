"""Event exemptions as they stand now: the event types an attempt's student may not be
held to (AllowanceTerms.event_exemption). Read at each use, never copied onto stored
rows, so that a grant or a revoke changes the next score, evidence and view."""

from __future__ import annotations

import uuid

from veritas_grpc.services.unit_of_work import UnitOfWork


def exempt_types(uow: UnitOfWork, attempt_id: uuid.UUID) -> frozenset[str]:
    """The event types exempt for the attempt's student at its exam."""
    return uow.allowances.exempt_types_of_attempts([attempt_id]).get(attempt_id, frozenset())
