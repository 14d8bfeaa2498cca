"""The append-only audit trail, chained (domain/audit_chain.py).

Rows a transaction appends wait in memory until its commit: `seal` then locks the
chain's head, links them after the newest row and inserts them, as the transaction's
last statements. The head's lock is held only from there to the commit, so concurrent
writers take turns for a moment instead of forking the chain.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from sqlalchemy import (
    Select,
    Text,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from veritas_grpc.db.models import AuditChainHead, AuditLog
from veritas_grpc.db.prepared import Prepared
from veritas_grpc.domain.audit import AuditEntry, AuditQuery, StoredAuditEntry
from veritas_grpc.domain.audit_chain import (
    AuditContent,
    ChainedRow,
    ChainKeys,
    link_hash,
)

CHAIN_READ_BATCH = 5000
# Audit rows read per page when exporting or erasing one student's.
SUBJECT_READ_BATCH = 1000

# Set once at start-up by the composition root (use_chain_keys), from a secret every
# server process shares, like the page-token key.
_chain_keys: ChainKeys | None = None


def use_chain_keys(keys: ChainKeys) -> None:
    global _chain_keys
    _chain_keys = keys


def chain_keys() -> ChainKeys:
    if _chain_keys is None:
        raise RuntimeError("the audit chain key is not configured (use_chain_keys)")
    return _chain_keys


# Sealing runs in every audited call: its statements are built once, the one-row seal's
# prepared (docs/BENCH_SCALE.md).
_HEAD = AuditChainHead.__table__
_LOCK_HEAD = Prepared(
    select(_HEAD.c.last_sequence, _HEAD.c.last_link_hash).where(_HEAD.c.id == 1).with_for_update()
)
_INSERT_ROWS = insert(AuditLog.__table__)
# The head moves to the last row sealed: its sequence and link.
_MOVE_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(last_sequence=bindparam("sequence"), last_link_hash=bindparam("link_hash"))
)


@functools.cache
def _insert_one_moving_head(columns: tuple[str, ...]) -> Prepared:
    """One row (most calls seal one) and the head's move in one statement: the move, a
    CTE, takes the row's own sequence and link."""
    values = {name: bindparam(name) for name in columns}
    return Prepared(insert(AuditLog.__table__).values(values).add_cte(_MOVE_HEAD.cte("moved_head")))


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._pending: list[AuditEntry] = []

    def append(self, entry: AuditEntry) -> None:
        self._pending.append(entry)

    def seal(self) -> None:
        """Link and insert the rows appended since the last seal."""
        if not self._pending:
            return
        self._session.flush()  # the transaction's other writes first: the lock comes last
        connection = self._session.connection()
        sequence, previous = _LOCK_HEAD.execute(connection, {}).one()
        keys = chain_keys()
        now = datetime.now(UTC)
        rows = []
        for entry in self._pending:
            sequence += 1
            content = _content(entry, sequence, now)
            digest = content.digest()
            previous = link_hash(keys.current, previous, digest)
            rows.append(_row(content, digest, previous, keys.current_id))
        if len(rows) == 1:
            _insert_one_moving_head(tuple(rows[0])).execute(connection, rows[0])
        else:
            self._session.execute(_INSERT_ROWS, rows)
            self._session.execute(_MOVE_HEAD, {"sequence": sequence, "link_hash": previous})
        self._pending.clear()

    def discard(self) -> None:
        """Forget the rows appended since the last seal (the transaction rolled back)."""
        self._pending.clear()

    # Reading -------------------------------------------------------------------------

    def query(
        self, query: AuditQuery, after: tuple[datetime, int] | None, limit: int
    ) -> list[StoredAuditEntry]:
        """Newest first, by (occurred_at, id): a page after the keyset position."""
        statement = _filtered(select(AuditLog), query)
        if after is not None:
            statement = statement.where(tuple_(AuditLog.occurred_at, AuditLog.id) < after)
        statement = statement.order_by(AuditLog.occurred_at.desc(), AuditLog.id.desc())
        rows = self._session.execute(statement.limit(limit)).scalars()
        return [_stored(row) for row in rows]

    def chained_rows(self, up_to: int, after: int = 0) -> Iterator[ChainedRow]:
        """The chained rows after one sequence up to another, in order, read in batches
        (bounded memory)."""
        last = after
        while True:
            batch = list(
                self._session.execute(
                    select(AuditLog)
                    .where(AuditLog.sequence > last, AuditLog.sequence <= up_to)
                    .order_by(AuditLog.sequence)
                    .limit(CHAIN_READ_BATCH)
                ).scalars()
            )
            for row in batch:
                yield _chained(row)
            if len(batch) < CHAIN_READ_BATCH:
                return
            last = batch[-1].sequence or last
            self._session.expunge_all()

    def freeze_head(self) -> tuple[int, bytes]:
        """The chain's head, as the first read of a transaction that sees the chain as
        of this moment (REPEATABLE READ): rows committed later stay out of its view."""
        self._session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        head = self._session.execute(
            select(AuditChainHead).where(AuditChainHead.id == 1)
        ).scalar_one()
        return head.last_sequence, head.last_link_hash

    def unchained_count(self, head_sequence: int) -> int:
        """Rows outside the chain: beyond its head, or without a place in it and not
        there before it began. Neither can be written but by going around the server."""
        before_chain = select(AuditChainHead.unchained_max_id).scalar_subquery()
        pruned = select(AuditChainHead.pruned_sequence).scalar_subquery()
        outside = (
            (AuditLog.sequence > head_sequence)
            | (AuditLog.sequence <= pruned)
            | (AuditLog.sequence.is_(None) & (AuditLog.id > before_chain))
        )
        return int(
            self._session.execute(
                select(func.count()).select_from(AuditLog).where(outside)
            ).scalar_one()
        )

    def pruned_point(self) -> tuple[int, bytes]:
        """The sequence and link of the last row audit retention deleted (0, GENESIS:
        none), where verification starts."""
        head = self._session.execute(
            select(AuditChainHead.pruned_sequence, AuditChainHead.pruned_link_hash).where(
                AuditChainHead.id == 1
            )
        ).one()
        return int(head[0]), bytes(head[1])

    # Data subjects -------------------------------------------------------------------

    def about_subject(
        self, user_id: uuid.UUID, identifiers: tuple[str, ...]
    ) -> Iterator[StoredAuditEntry]:
        """The rows about one person, oldest first, in pages: they are the actor, or the
        resource names them (their id, their e-mail in sign-in rows, their enrollment
        id), or the details hold one of the identifiers (lower case; a full scan of the
        details, as rare as an erasure or an export)."""
        lowered_resource = func.lower(AuditLog.resource_id)
        lowered_details = func.lower(AuditLog.details.cast(Text))
        about = or_(
            AuditLog.actor_id == user_id,
            *(func.strpos(lowered_resource, value) > 0 for value in identifiers),
            *(func.strpos(lowered_details, value) > 0 for value in identifiers),
        )
        last = 0
        while True:
            batch = list(
                self._session.execute(
                    select(AuditLog)
                    .where(about, AuditLog.id > last)
                    .order_by(AuditLog.id)
                    .limit(SUBJECT_READ_BATCH)
                ).scalars()
            )
            last = batch[-1].id if batch else last
            stored = [_stored(row) for row in batch]
            for row in batch:  # only these: the caller's objects stay in the session
                self._session.expunge(row)
            yield from stored
            if len(batch) < SUBJECT_READ_BATCH:
                return

    def redact(
        self,
        changes: list[tuple[int, AuditContent]],
        erasure: Callable[[int, list[int]], AuditEntry],
    ) -> int:
        """Rewrite the identifying fields of rows (by row id) and append the erasure's
        own row after them; its sequence, which each rewritten row names in redacted_by
        (a row redacted before keeps its first erasure). `erasure` builds that row from
        its sequence and the sequences newly marked. The head stays locked from here to
        the commit, so the erasure row takes exactly the sequence reserved."""
        head = self._session.execute(
            select(AuditChainHead)
            .where(AuditChainHead.id == 1)
            .with_for_update()
            # seal moves the head with a Core UPDATE: never trust a copy loaded before.
            .execution_options(populate_existing=True)
        ).scalar_one()
        sequence = head.last_sequence + len(self._pending) + 1
        self._session.execute(text("SET LOCAL veritas.audit_redaction = 'on'"))
        marked: list[int] = []
        for row_id, content in changes:
            result = self._session.execute(
                update(AuditLog)
                .where(AuditLog.id == row_id)
                .values(
                    actor_id=None if content.actor_id is None else uuid.UUID(content.actor_id),
                    resource_id=content.resource_id,
                    peer=content.peer,
                    details=dict(content.details),
                    redacted_by=func.coalesce(AuditLog.redacted_by, sequence),
                )
                .returning(AuditLog.sequence, AuditLog.redacted_by)
            ).one()
            if result[0] is not None and result[1] == sequence:
                marked.append(int(result[0]))
        self._session.execute(text("SET LOCAL veritas.audit_redaction = 'off'"))
        self.append(erasure(sequence, sorted(marked)))
        return sequence

    # Retention -----------------------------------------------------------------------

    def prunable_up_to(self, cutoff: datetime) -> int:
        """The newest sequence S such that every row up to S is older than the cutoff
        (rows are pruned as a prefix of the chain only); 0 if none."""
        head = self._session.execute(
            select(AuditChainHead.last_sequence, AuditChainHead.pruned_sequence)
        ).one()
        newer = self._session.scalar(
            select(func.min(AuditLog.sequence)).where(
                AuditLog.occurred_at >= cutoff, AuditLog.sequence > head[1]
            )
        )
        up_to = int(head[0]) if newer is None else int(newer) - 1
        return up_to if up_to > int(head[1]) else 0

    def prune(self, up_to: int) -> int:
        """Delete the chained rows up to a sequence (and rows older than the chain),
        recording the last one's link in the head; how many rows went."""
        head = self._session.execute(
            select(AuditChainHead)
            .where(AuditChainHead.id == 1)
            .with_for_update()
            # seal moves the head with a Core UPDATE: never trust a copy loaded before.
            .execution_options(populate_existing=True)
        ).scalar_one()
        if up_to <= head.pruned_sequence:
            return 0
        link = self._session.scalar(select(AuditLog.link_hash).where(AuditLog.sequence == up_to))
        if link is None:
            raise ValueError(f"audit row {up_to} is missing: the chain is broken")
        head.pruned_sequence, head.pruned_link_hash = up_to, bytes(link)
        self._session.flush()
        self._session.execute(text("SET LOCAL veritas.audit_prune = 'on'"))
        result = self._session.execute(
            text(
                "DELETE FROM audit_logs WHERE sequence <= :up_to "
                "OR (sequence IS NULL AND id <= "
                "(SELECT unchained_max_id FROM audit_chain_head WHERE id = 1))"
            ),
            {"up_to": up_to},
        )
        self._session.execute(text("SET LOCAL veritas.audit_prune = 'off'"))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _filtered(statement: Select[tuple[AuditLog]], query: AuditQuery) -> Select[tuple[AuditLog]]:
    conditions = [
        (query.actor_id, lambda: AuditLog.actor_id == uuid.UUID(str(query.actor_id))),
        (query.action, lambda: AuditLog.action == query.action),
        (query.resource_type, lambda: AuditLog.resource_type == query.resource_type),
        (query.resource_id, lambda: AuditLog.resource_id == query.resource_id),
        (query.outcome, lambda: AuditLog.outcome == query.outcome),
        (query.start_time, lambda: AuditLog.occurred_at >= query.start_time),
        (query.end_time, lambda: AuditLog.occurred_at < query.end_time),
    ]
    for value, condition in conditions:
        if value is not None:
            statement = statement.where(condition())
    return statement


def _content(entry: AuditEntry, sequence: int, now: datetime) -> AuditContent:
    return AuditContent(
        sequence=sequence,
        occurred_at=now,
        action=entry.action,
        outcome=entry.outcome,
        actor_id=None if entry.actor_id is None else str(entry.actor_id),
        actor_role=entry.actor_role,
        resource_type=entry.resource_type,
        resource_id=entry.resource_id,
        peer=entry.peer,
        request_id=entry.request_id,
        details=entry.details,
    )


def _row(content: AuditContent, digest: bytes, link: bytes, key_id: str) -> dict[str, object]:
    return {
        "sequence": content.sequence,
        "occurred_at": content.occurred_at,
        "action": content.action,
        "outcome": content.outcome,
        "actor_id": None if content.actor_id is None else uuid.UUID(content.actor_id),
        "actor_role": content.actor_role,
        "resource_type": content.resource_type,
        "resource_id": content.resource_id,
        "peer": content.peer,
        "request_id": content.request_id,
        "details": dict(content.details),
        "content_digest": digest,
        "link_hash": link,
        "key_id": key_id,
    }


def _content_of(row: AuditLog) -> AuditContent:
    return AuditContent(
        sequence=row.sequence or 0,
        occurred_at=row.occurred_at,
        action=row.action,
        outcome=row.outcome,
        actor_id=None if row.actor_id is None else str(row.actor_id),
        actor_role=row.actor_role,
        resource_type=row.resource_type,
        resource_id=row.resource_id,
        peer=row.peer,
        request_id=row.request_id,
        details=row.details,
    )


def _chained(row: AuditLog) -> ChainedRow:
    return ChainedRow(
        row_id=row.id,
        content=_content_of(row),
        content_digest=bytes(row.content_digest or b""),
        link=bytes(row.link_hash or b""),
        key_id=row.key_id or "",
        redacted_by=row.redacted_by,
    )


def _stored(row: AuditLog) -> StoredAuditEntry:
    return StoredAuditEntry(row_id=row.id, sequence=row.sequence, content=_content_of(row))
