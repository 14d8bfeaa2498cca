"""Model objects one query loads together: what repositories hand back when a use case
needs an object with its context (an attempt with its exam, an exam with the viewer's
access to it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from veritas_grpc.db.models.exams import Exam, ExamAttempt
from veritas_grpc.domain.allowances import Terms
from veritas_grpc.domain.exams import AccessLevel


@dataclass(frozen=True)
class AttemptInContext:
    """An attempt with the names a view of it shows."""

    attempt: ExamAttempt
    exam: Exam
    student_name: str


# An attempt as a flat row of its columns, named as ExamAttempt's attributes. Reads of
# many attempts take rows, not objects: loading each of 50 attempts and its exam as ORM
# objects cost more than the query (docs/BENCH_SCALE.md).
AttemptRow = Row[Any]
# An attempt as listings read it: an AttemptRow with its exam's `title` and `max_score`
# and its student's `full_name`.
ListedAttempt = Row[Any]


# An exam as listings read it: a flat row of Exam's columns, its ExamStats figures and
# the viewer's `access`, each named as the models' attributes.
ListedExam = Row[Any]


@dataclass(frozen=True)
class VisibleExam:
    """An exam (or a ListedExam) with the viewer's access to it."""

    exam: Exam | ListedExam
    access: AccessLevel


@dataclass(frozen=True)
class AvailableExam:
    """An exam open to one student now, with what they have of it: their attempts so
    far, their standing allowances there, and whether they completed its required
    practice exam."""

    exam: Exam
    used_attempts: int
    standing: tuple[Terms, ...]
    practice_completed: bool
    # The exam's required practice exam, while that is published (else None).
    required_practice_id: uuid.UUID | None = None
