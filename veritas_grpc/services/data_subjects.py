"""Data-subject rights: exporting everything stored about one student, and erasing it.

Erasure semantics (README, "Data-subject rights and retention"):
- removed for good: the e-mail, name and enrollment id (the account becomes an anonymous
  shell: `erased-…@erased.invalid`, no name, the pseudonym as enrollment id, no usable
  password, inactive), every event of the student's attempts (and their alert-log rows),
  every analysis, every review, every allowance (its note may describe a disability),
  the sign-in sessions and refresh tokens (so every access token dies at its next
  check), set-password tokens and the sign-in throttle buckets named by the e-mail;
- kept, anonymous: the attempts with their figures (status, score, integrity score,
  label, flag), so an exam's published figures do not change and still equal a
  recomputation over the attempts; an attempt still in progress is abandoned (which
  changes no figure); the counters of what was erased (events, reviews) go to zero;
- the audit rows about the student keep their place in the chain with the identifying
  fields replaced by a pseudonym (domain/data_subjects.py), under the erasure's own row
  (domain/audit_chain.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from veritas_grpc.domain.audit import AuditEntry
from veritas_grpc.domain.audit_chain import ERASURE_ACTION, ChainKeys, erasure_details
from veritas_grpc.domain.data_subjects import (
    ERASED_EMAIL_DOMAIN,
    UNUSABLE_PASSWORD_HASH,
    Subject,
    json_safe,
    pseudonym,
    pseudonym_key,
    redacted,
)
from veritas_grpc.domain.errors import InvalidArgument, NotFound
from veritas_grpc.domain.exams import AttemptStatus
from veritas_grpc.domain.identity import Principal
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.observability import current_call
from veritas_grpc.services import auditing
from veritas_grpc.services.attempts import apply_change, facts
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory

STUDENT_NOT_FOUND = "no such student"
# Records per chunk of the export stream, and roughly the most JSON bytes in one.
CHUNK_RECORDS = 500
CHUNK_BYTES = 1024 * 1024
EVENTS_PER_PAGE = 1000


@dataclass(frozen=True)
class ExportRecord:
    kind: str  # profile, attempt, allowance, event, analysis, review, audit
    data: dict[str, Any]


@dataclass(frozen=True)
class ErasureReport:
    pseudonym: str
    erased_event_count: int
    erased_analysis_count: int
    erased_review_count: int
    anonymized_attempt_count: int
    pseudonymized_audit_count: int


class DataSubjects:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        keys: ChainKeys | None,
        clock: Callable[[], datetime],
        events_per_page: int = EVENTS_PER_PAGE,
    ) -> None:
        self._uow_factory = uow_factory
        self._keys = keys
        self._clock = clock
        self._events_per_page = events_per_page

    def student_id_by_email(self, email: str) -> str:
        """For operators (the CLI): the id of the student with this e-mail; NOT_FOUND."""
        with self._uow_factory() as uow:
            found = uow.data_subjects.student_id_by_email(email)
            if found is None or uow.data_subjects.student(found) is None:
                raise NotFound(STUDENT_NOT_FOUND)
            return str(found)

    # Export ----------------------------------------------------------------------------

    def export(self, actor: Principal | None, student_id: str) -> Iterator[list[ExportRecord]]:
        """Check and audit the export now (INVALID_ARGUMENT, NOT_FOUND), then return its
        chunks, read as they are consumed from one consistent snapshot."""
        user_id = parse_id(student_id, "student_id")
        with self._uow_factory() as uow:
            found = uow.data_subjects.student(user_id) is not None
            auditing.record(
                uow,
                "student.export",
                "success" if found else "failure",
                actor=actor,
                resource_type="user",
                resource_id=user_id,
                details={} if found else {"reason": "not_found"},
            )
            uow.commit()
        if not found:
            raise NotFound(STUDENT_NOT_FOUND)
        return _chunks(self._records(user_id))

    def _records(self, user_id: uuid.UUID) -> Iterator[ExportRecord]:
        with self._uow_factory() as uow:
            uow.snapshot()
            store = uow.data_subjects
            if store.student(user_id) is None:  # erased meanwhile
                return
            yield ExportRecord("profile", json_safe(store.profile(user_id)))
            attempts = store.attempts(user_id)
            for attempt in attempts:
                yield ExportRecord("attempt", json_safe(attempt))
            for allowance in store.allowances(user_id):
                yield ExportRecord("allowance", json_safe(allowance))
            ids = [attempt["id"] for attempt in attempts]
            for attempt_id in ids:
                yield from self._events(uow, attempt_id)
            for analysis in store.analyses(ids):
                yield ExportRecord("analysis", json_safe(analysis))
            for review in store.reviews(ids):
                yield ExportRecord("review", json_safe(review))
            subject = _subject(uow, user_id)
            for entry in uow.audit.about_subject(user_id, subject.identifiers):
                yield ExportRecord("audit", json_safe(entry.as_document()))

    def _events(self, uow: UnitOfWork, attempt_id: uuid.UUID) -> Iterator[ExportRecord]:
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            page = uow.data_subjects.events_page(attempt_id, after, self._events_per_page)
            for event in page:
                yield ExportRecord("event", json_safe(event))
            if len(page) < self._events_per_page:
                return
            after = (page[-1]["occurred_at"], page[-1]["event_id"])

    # Erasure ---------------------------------------------------------------------------

    def erase(self, actor: Principal | None, student_id: str, confirm_email: str) -> ErasureReport:
        user_id = parse_id(student_id, "student_id")
        if not confirm_email.strip():
            raise InvalidArgument.of("confirm_email", "is required")
        if self._keys is None:
            raise RuntimeError("erasure needs the audit chain's key (VERITAS_AUDIT_SECRET)")
        name = pseudonym(pseudonym_key(self._keys.current), user_id)
        with self._uow_factory() as uow:
            found = uow.data_subjects.student(user_id, for_update=True)
            if found is None:
                auditing.record(
                    uow,
                    ERASURE_ACTION,
                    "failure",
                    actor=actor,
                    resource_type="user",
                    resource_id=user_id,
                    details={"reason": "not_found"},
                )
                uow.commit()
                raise NotFound(STUDENT_NOT_FOUND)
            user, profile = found
            if confirm_email.strip().lower() != user.email:
                # Nothing written: a mistyped id must not leave a trace of the e-mail.
                raise InvalidArgument.of("confirm_email", "is not the student's e-mail address")
            subject = Subject(user_id, user.email, user.full_name, profile.enrollment_id)
            report = self._erase(uow, actor, subject, name)
            uow.commit()
        return report

    def _erase(
        self, uow: UnitOfWork, actor: Principal | None, subject: Subject, name: str
    ) -> ErasureReport:
        store = uow.data_subjects
        now = self._clock()
        # Locked first: a late batch of events, a review or a save waits, then finds the
        # student erased (and writes nothing), instead of slipping in between the deletes.
        locked = store.attempts_for_update(subject.user_id)
        for attempt in locked:
            if attempt.status != AttemptStatus.IN_PROGRESS:
                continue
            before = facts(attempt)
            uow.attempts.finish(attempt, AttemptStatus.ABANDONED, now)
            apply_change(uow, attempt, before)
        ids = [attempt.id for attempt in locked]
        # No scorer is to read (or write an analysis of) what is being erased.
        uow.analysis_jobs.forget(ids)
        events = store.delete_events(ids)
        reviews = store.delete_reviews(ids)
        analyses = store.delete_analyses(ids)
        attempts = store.clear_attempt_evidence(ids)
        # Their notes may describe a disability: personal data, gone with the rest.
        allowances = uow.allowances.erase_student(subject.user_id)
        store.delete_sign_ins(subject.user_id, subject.email)
        store.anonymize(
            subject.user_id, f"{name}@{ERASED_EMAIL_DOMAIN}", UNUSABLE_PASSWORD_HASH, name
        )
        store.mark_erased(subject.user_id, name)
        # The running figures from what remains (the LMI and label came from analyses).
        uow.student_stats.recompute(subject.user_id)
        changes = []
        for entry in uow.audit.about_subject(subject.user_id, subject.identifiers):
            changed = redacted(entry.content, subject, name)
            if changed is not None:
                changes.append((entry.row_id, changed))
        counts = {
            "erased_event_count": events,
            "erased_analysis_count": analyses,
            "erased_review_count": reviews,
            "anonymized_attempt_count": attempts,
            "erased_allowance_count": allowances,
        }
        marked: list[int] = []

        def erasure_row(sequence: int, sequences: list[int]) -> AuditEntry:
            marked.extend(sequences)
            call = current_call()
            return AuditEntry(
                action=ERASURE_ACTION,
                outcome="success",
                actor_id=actor.user_id if actor else None,
                actor_role=actor.role.value if actor else None,
                resource_type="user",
                resource_id=name,
                peer=call.peer if call else None,
                request_id=call.request_id if call else None,
                details={**counts, **erasure_details(sequences)},
            )

        uow.audit.redact(changes, erasure_row)
        return ErasureReport(name, events, analyses, reviews, attempts, len(changes))


def _subject(uow: UnitOfWork, user_id: uuid.UUID) -> Subject:
    found = uow.data_subjects.student(user_id)
    assert found is not None
    user, profile = found
    return Subject(user_id, user.email, user.full_name, profile.enrollment_id)


def _chunks(records: Iterator[ExportRecord]) -> Iterator[list[ExportRecord]]:
    """Records in chunks of at most CHUNK_RECORDS and about CHUNK_BYTES of JSON, each
    handed on as soon as it is full (the reads behind it wait for the consumer)."""
    chunk: list[ExportRecord] = []
    size = 0
    try:
        for record in records:
            chunk.append(record)
            size += _approximate_size(record.data)
            if len(chunk) >= CHUNK_RECORDS or size >= CHUNK_BYTES:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()


def _approximate_size(value: Any) -> int:
    if isinstance(value, dict):
        return sum(len(str(k)) + _approximate_size(v) for k, v in value.items()) + 2
    if isinstance(value, list):
        return sum(_approximate_size(v) for v in value) + 2
    return len(str(value)) + 2
