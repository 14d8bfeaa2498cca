"""What one audit row says: who did what to which resource, with what outcome."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


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
