"""Reading the audit trail and verifying its chain: the admin's and operator's use cases.

Both are audited themselves: who looked at the trail is part of the trail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from veritas_grpc.domain.audit import AuditQuery, StoredAuditEntry
from veritas_grpc.domain.audit_chain import BrokenLink, ChainKeys, Verdict, verify_chain
from veritas_grpc.domain.errors import Conflict, FailedPrecondition, InvalidArgument, Validator
from veritas_grpc.domain.identity import Principal
from veritas_grpc.domain.ids import canonical_uuid
from veritas_grpc.services import auditing
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWorkFactory

OUTCOMES = ("success", "failure", "denied")
MAX_FILTER_CHARS = 256
DEFAULT_AUDIT_PAGE = 50
MAX_AUDIT_PAGE = 500


@dataclass(frozen=True)
class ChainReport:
    verdict: Verdict
    # The head the check started from (rows committed while it ran are not part of it).
    head_sequence: int
    head_hash: bytes

    @property
    def intact(self) -> bool:
        return self.verdict.intact


@dataclass(frozen=True)
class PruneReport:
    """What audit retention deleted: the rows up to `pruned_sequence` (0: nothing)."""

    pruned_sequence: int
    deleted_count: int


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuditTrail:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        keys: ChainKeys | None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._uow_factory = uow_factory
        self._keys = keys
        self._clock = clock

    def query(
        self, actor: Principal | None, query: AuditQuery, page_size: int, page_token: str
    ) -> Page[StoredAuditEntry]:
        query = _checked(query)
        request = page_request(
            page_size, page_token, _scope(query), DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE
        )
        after = position(request, datetime.fromisoformat, int)
        with self._uow_factory() as uow:
            rows = uow.audit.query(query, after, request.size + 1)  # type: ignore[arg-type]
            auditing.record(
                uow, "audit.query", "success", actor=actor, details={"filters": _filters(query)}
            )
            uow.commit()
        return paginate(rows, request, lambda r: (r.content.occurred_at.isoformat(), r.row_id))

    def verify(self, actor: Principal | None) -> ChainReport:
        verdict, head_sequence, head_hash = self._walk()
        # Its own audit row is written in a transaction of its own: sealing it in the
        # snapshot's would fail to serialize whenever another row was sealed meanwhile.
        with self._uow_factory() as uow:
            auditing.record(
                uow,
                "audit.verify",
                "success" if verdict.intact else "failure",
                actor=actor,
                details=_verdict_details(verdict),
            )
            try:
                uow.commit()
            except Conflict:
                # A row forged beyond the head holds the next sequence: no audit row can
                # be added until it is dealt with, which the report says.
                if verdict.intact:
                    raise
        return ChainReport(verdict, head_sequence, head_hash)

    def record_backup(self, outcome: str, details: dict[str, object]) -> None:
        """An operator's `veritas backup`: a copy of every student's data left the
        system. Written after the dump, so in the live trail, not in the copy."""
        with self._uow_factory() as uow:
            auditing.record(
                uow, "database.backup", outcome, resource_type="database", details=details
            )
            uow.commit()

    def _walk(self) -> tuple[Verdict, int, bytes]:
        """The chain checked as of one moment (a snapshot), up to the head it had then."""
        keys = self._keys.by_id() if self._keys else {}
        with self._uow_factory() as uow:
            head_sequence, head_hash = uow.audit.freeze_head()
            # Audit retention deleted the rows up to a point: the walk starts after it.
            start, start_link = uow.audit.pruned_point()
            rows = uow.audit.chained_rows(up_to=head_sequence, after=start)
            verdict = verify_chain(rows, keys, start, start_link)
            verdict = _against_head(verdict, head_sequence, head_hash)
            if verdict.intact and (slipped := uow.audit.unchained_count(head_sequence)):
                verdict = Verdict(
                    verdict.checked_count,
                    verdict.head_sequence,
                    verdict.head_hash,
                    BrokenLink(0, None, f"rows outside the chain were inserted: {slipped}"),
                )
        return verdict, head_sequence, head_hash

    def prune(self, actor: Principal | None, older_than_days: int) -> PruneReport:
        """Audit retention: delete the rows older than `older_than_days` days, as a prefix
        of the chain (a row stays while an older-dated one after it does), after checking
        that prefix: rows that fail verification are evidence and are never pruned
        (FailedPrecondition). The head keeps the last deleted row's sequence and link,
        where verification starts from then on. The prune is itself audited."""
        if older_than_days < 1:
            raise InvalidArgument.of("older_than_days", "must be at least 1")
        keys = self._keys.by_id() if self._keys else {}
        cutoff = self._clock() - timedelta(days=older_than_days)
        with self._uow_factory() as uow:
            up_to = uow.audit.prunable_up_to(cutoff)
            if not up_to:
                return PruneReport(0, 0)
            start, start_link = uow.audit.pruned_point()
            rows = uow.audit.chained_rows(up_to=up_to, after=start)
            verdict = verify_chain(rows, keys, start, start_link, complete=False)
            if verdict.intact and verdict.head_sequence != up_to:
                verdict = Verdict(
                    verdict.checked_count,
                    verdict.head_sequence,
                    verdict.head_hash,
                    BrokenLink(verdict.head_sequence + 1, None, "rows are missing"),
                )
        details: dict[str, object] = {"cutoff": cutoff.isoformat(), "up_to_sequence": up_to}
        with self._uow_factory() as uow:
            if not verdict.intact:
                auditing.record(
                    uow, "audit.prune", "failure", actor=actor, details=_verdict_details(verdict)
                )
                uow.commit()
                assert verdict.broken is not None
                raise FailedPrecondition(
                    f"the audit rows to prune do not verify (sequence "
                    f"{verdict.broken.sequence}: {verdict.broken.reason}); nothing was pruned"
                )
            deleted = uow.audit.prune(up_to)
            details["deleted_count"] = deleted
            auditing.record(uow, "audit.prune", "success", actor=actor, details=details)
            uow.commit()
        return PruneReport(up_to, deleted)


def _against_head(verdict: Verdict, head_sequence: int, head_hash: bytes) -> Verdict:
    """The walk must end exactly at the head the database recorded."""
    if not verdict.intact:
        return verdict
    broken = None
    if verdict.head_sequence < head_sequence:
        first = verdict.head_sequence + 1
        broken = BrokenLink(first, None, f"rows {first}..{head_sequence} are missing")
    elif verdict.head_hash != head_hash:
        broken = BrokenLink(head_sequence, None, "the head does not match the newest row")
    if broken is None:
        return verdict
    return Verdict(verdict.checked_count, verdict.head_sequence, verdict.head_hash, broken)


def _verdict_details(verdict: Verdict) -> dict[str, object]:
    details: dict[str, object] = {"checked_count": verdict.checked_count}
    if verdict.broken is not None:
        details["broken_sequence"] = verdict.broken.sequence
        details["reason"] = verdict.broken.reason
    return details


def _checked(query: AuditQuery) -> AuditQuery:
    """The query with its actor id in canonical form; INVALID_ARGUMENT on a bad filter."""
    check = Validator()
    actor_id = canonical_uuid(query.actor_id) if query.actor_id else None
    check.check(not query.actor_id or actor_id is not None, "actor_id", "must be a UUID")
    for name in ("action", "resource_type", "resource_id"):
        value = getattr(query, name)
        check.check(value is None or len(value) <= MAX_FILTER_CHARS, name, "is too long")
    check.check(query.outcome is None or query.outcome in OUTCOMES, "outcome", "is unknown")
    if query.start_time and query.end_time:
        check.check(query.start_time < query.end_time, "end_time", "must be after start_time")
    check.raise_if_any()
    return replace(query, actor_id=actor_id)


def _filters(query: AuditQuery) -> dict[str, str]:
    values = {
        "actor_id": query.actor_id,
        "action": query.action,
        "resource_type": query.resource_type,
        "resource_id": query.resource_id,
        "outcome": query.outcome,
        "start_time": query.start_time.isoformat() if query.start_time else None,
        "end_time": query.end_time.isoformat() if query.end_time else None,
    }
    return {name: str(value) for name, value in values.items() if value is not None}


def _scope(query: AuditQuery) -> str:
    """The listing a page token belongs to: the same filters, or the token is refused
    (a digest, so that long filters do not make long tokens)."""
    encoded = json.dumps(_filters(query), sort_keys=True).encode()
    return "audit:" + hashlib.sha256(encoded).hexdigest()[:32]
