"""A grant of an event exemption changes how the student's ended attempts at the exam
read: their rule scores and flags are recomputed at once (as a reviewer's dismissal
does) and the scoring service is asked to look again. A revoke needs none of this: it
changes no attempt already started (services/exemptions.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from veritas_grpc.db.models import Exam, User
from veritas_grpc.db.models.joined import AttemptInContext
from veritas_grpc.domain.analysis_jobs import JobReason
from veritas_grpc.domain.identity import Principal
from veritas_grpc.services.analysis import rescore_by_rules
from veritas_grpc.services.unit_of_work import UnitOfWork


def rescore_ended(
    uow: UnitOfWork, actor: Principal, exam: Exam, student: User, threshold: Decimal, now: datetime
) -> None:
    """Re-score and re-flag the student's ended attempts at the (locked) exam."""
    ended = uow.allowances.ended_attempts(exam.id, student.id)
    for attempt in ended:
        rescore_by_rules(
            uow, AttemptInContext(attempt, exam, student.full_name), actor, threshold, now
        )
    uow.analysis_jobs.request([a.id for a in ended], JobReason.EVENT_REVIEWED, now)
