"""Allowances as teachers see them: with their notes (never shown to the student)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from veritas_grpc.db.models import ExamAllowance
from veritas_grpc.domain.allowances import Terms
from veritas_grpc.services.views.attempts import AttemptView


@dataclass(frozen=True)
class AllowanceView:
    id: uuid.UUID
    exam_id: uuid.UUID
    student_id: uuid.UUID
    student_name: str
    terms: Terms
    note: str
    granter_id: uuid.UUID | None
    grant_time: datetime
    revoke_time: datetime | None


def allowance_view(row: ExamAllowance, student_name: str) -> AllowanceView:
    return AllowanceView(
        id=row.id,
        exam_id=row.exam_id,
        student_id=row.student_id,
        student_name=student_name,
        terms=row.terms(),
        note=row.note,
        granter_id=row.granted_by,
        grant_time=row.granted_at,
        revoke_time=row.revoked_at,
    )


@dataclass(frozen=True)
class GrantResult:
    """The allowance granted, and the student's running attempts whose deadline it
    moved."""

    allowance: AllowanceView
    extended_attempts: tuple[AttemptView, ...]
