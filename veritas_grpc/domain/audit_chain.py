"""The audit trail's tamper evidence: every row is a link of one hash chain.

    content_digest = SHA-256(canonical JSON of the row's content)
    link_hash      = HMAC-SHA-256(key, previous link_hash || content_digest)

The first row's previous hash is GENESIS. The key comes from a secret the database
does not hold, so a database superuser who rewrites rows cannot forge the links that
follow: altering a row breaks its own link, deleting one leaves a gap in the sequence,
inserting one needs a link only the key can make. Deleting the newest rows is the one
change the chain cannot show by itself: compare the head that `veritas audit verify`
prints with one recorded outside the database.

The content digest is stored beside the link, so that an erasure can replace a row's
personal fields without breaking the links after it (the digest then vouches for the
content that was there). Such a row names the erasure's own row in `redacted_by`; the
verifier checks its link but not its content, and the erasure row (sealed in the same
transaction, action ERASURE_ACTION) lists the sequences it redacted, with their count
and digest: every erasure row must be named by exactly the rows it lists, so marking
more rows as redacted (to hide a change of their content) is found.

Audit retention deletes the oldest rows: the head then records the sequence and link of
the last row deleted, and verification starts from there instead of GENESIS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = bytes(32)
KEY_ID_CHARS = 16
ERASURE_ACTION = "student.erase"


def chain_key(secret: str) -> bytes:
    """The chain key derived from a server secret: a key of its own, so a link is never
    a valid signature of any other kind (tokens, page tokens)."""
    return hmac.new(secret.encode(), b"veritas audit chain v1", hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """A name for a key that does not reveal it: which key sealed a row."""
    return hmac.new(key, b"key id", hashlib.sha256).hexdigest()[:KEY_ID_CHARS]


@dataclass(frozen=True)
class ChainKeys:
    """The key new rows are sealed with, and older ones a rotation left behind (still
    needed to verify the rows they sealed)."""

    current: bytes
    older: tuple[bytes, ...] = ()

    @classmethod
    def from_secrets(cls, current: str, *older: str) -> ChainKeys:
        return cls(chain_key(current), tuple(chain_key(secret) for secret in older))

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def by_id(self) -> dict[str, bytes]:
        return {key_id(key): key for key in (self.current, *self.older)}


@dataclass(frozen=True)
class AuditContent:
    """What a row says, exactly as it is stored: the part the chain vouches for."""

    sequence: int
    occurred_at: datetime
    action: str
    outcome: str
    actor_id: str | None
    actor_role: str | None
    resource_type: str | None
    resource_id: str | None
    peer: str | None
    request_id: str | None
    details: Mapping[str, Any]

    def canonical(self) -> bytes:
        when = self.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
        document = {
            "sequence": self.sequence,
            "occurred_at": when,
            "action": self.action,
            "outcome": self.outcome,
            "actor_id": self.actor_id,
            "actor_role": self.actor_role,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "peer": self.peer,
            "request_id": self.request_id,
            "details": self.details,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()


def link_hash(key: bytes, previous: bytes, content_digest: bytes) -> bytes:
    return hmac.new(key, previous + content_digest, hashlib.sha256).digest()


@dataclass(frozen=True)
class ChainedRow:
    """A stored row as the verifier reads it."""

    row_id: int
    content: AuditContent
    content_digest: bytes
    link: bytes
    key_id: str
    redacted_by: int | None = None


def is_erasure(content: AuditContent) -> bool:
    """A row that redacted others (a refused erasure is audited too, and redacts none)."""
    return content.action == ERASURE_ACTION and content.outcome == "success"


def sequences_digest(sequences: Iterable[int]) -> str:
    """The digest an erasure row records of the sequences it redacted (ascending), each
    as 8 bytes big-endian; hex."""
    hasher = hashlib.sha256()
    for sequence in sorted(sequences):
        hasher.update(sequence.to_bytes(8, "big"))
    return hasher.hexdigest()


def erasure_details(redacted: Iterable[int]) -> dict[str, Any]:
    """What an erasure row says about the rows it redacted (checked by verify_chain)."""
    sequences = sorted(redacted)
    return {
        "redacted_count": len(sequences),
        "redacted_digest": sequences_digest(sequences),
        "redacted_sequences": sequences,
    }


@dataclass(frozen=True)
class BrokenLink:
    sequence: int
    row_id: int | None
    reason: str


@dataclass(frozen=True)
class Verdict:
    checked_count: int
    head_sequence: int
    head_hash: bytes
    broken: BrokenLink | None

    @property
    def intact(self) -> bool:
        return self.broken is None


def verify_chain(
    rows: Iterable[ChainedRow],
    keys: Mapping[str, bytes],
    start_sequence: int = 0,
    start_link: bytes = GENESIS,
    complete: bool = True,
) -> Verdict:
    """Walk the rows in sequence order; the first link that does not hold, if any.

    `keys` maps key ids to keys: the current one, and any older ones the chain was
    sealed with before a rotation. The walk starts after `start_sequence`, whose link is
    `start_link` (the last row audit retention deleted; none: GENESIS). A walk that is
    not `complete` (a prefix of the chain, checked before pruning it) leaves rows whose
    erasure row comes later unsettled instead of broken."""
    previous, expected, checked = start_link, start_sequence + 1, 0
    redactions = _Redactions(start_sequence)
    for row in rows:
        broken = _check(row, previous, expected, keys) or redactions.see(row)
        if broken is not None:
            return Verdict(checked, expected - 1, previous, broken)
        previous, expected, checked = row.link, expected + 1, checked + 1
    broken = redactions.unclaimed() if complete else None
    return Verdict(checked, expected - 1, previous, broken)


class _Redactions:
    """Rows marked redacted, tallied by the erasure row they name (a running count and
    digest: they come in sequence order, before their erasure row), settled when the
    walk reaches that row."""

    def __init__(self, start_sequence: int) -> None:
        self._start = start_sequence
        self._tallies: dict[int, tuple[int, Any]] = {}

    def see(self, row: ChainedRow) -> BrokenLink | None:
        sequence = row.content.sequence
        if row.redacted_by is not None:
            if row.redacted_by <= sequence:
                return BrokenLink(sequence, row.row_id, "redacted by an earlier row")
            count, hasher = self._tallies.get(row.redacted_by, (0, hashlib.sha256()))
            hasher.update(sequence.to_bytes(8, "big"))
            self._tallies[row.redacted_by] = (count + 1, hasher)
        tally = self._tallies.pop(sequence, None)
        if not is_erasure(row.content):
            if tally is not None:
                reason = f"{tally[0]} rows say this row redacted them; it is no erasure"
                return BrokenLink(sequence, row.row_id, reason)
            return None
        return self._settle(row, tally)

    def _settle(self, row: ChainedRow, tally: tuple[int, Any] | None) -> BrokenLink | None:
        sequence = row.content.sequence
        if row.redacted_by is not None:
            return BrokenLink(sequence, row.row_id, "an erasure row was itself redacted")
        details = row.content.details
        listed = details.get("redacted_sequences")
        if not isinstance(listed, list) or not all(isinstance(s, int) for s in listed):
            return BrokenLink(sequence, row.row_id, "the erasure row lists no redacted rows")
        if details.get("redacted_count") != len(listed) or details.get(
            "redacted_digest"
        ) != sequences_digest(listed):
            return BrokenLink(sequence, row.row_id, "the erasure row's count or digest is wrong")
        # Rows before the start were pruned by retention: the rest must name this row.
        surviving = [s for s in listed if s > self._start]
        count, hasher = tally if tally is not None else (0, hashlib.sha256())
        if count != len(surviving) or hasher.hexdigest() != sequences_digest(surviving):
            reason = (
                f"the erasure redacted {len(surviving)} rows here, "
                f"but {count} rows say it redacted them"
            )
            return BrokenLink(sequence, row.row_id, reason)
        return None

    def unclaimed(self) -> BrokenLink | None:
        """Rows naming an erasure row the walk never reached."""
        if not self._tallies:
            return None
        sequence = min(self._tallies)
        count = self._tallies[sequence][0]
        return BrokenLink(sequence, None, f"{count} rows say row {sequence} redacted them")


def _check(
    row: ChainedRow, previous: bytes, expected: int, keys: Mapping[str, bytes]
) -> BrokenLink | None:
    sequence = row.content.sequence
    if sequence < expected:
        return BrokenLink(sequence, row.row_id, "a second row with this sequence (inserted)")
    if sequence > expected:
        return BrokenLink(expected, None, f"rows {expected}..{sequence - 1} are missing")
    if row.redacted_by is None and row.content.digest() != row.content_digest:
        return BrokenLink(sequence, row.row_id, "the row's content was changed")
    key = keys.get(row.key_id)
    if key is None:
        return BrokenLink(sequence, row.row_id, f"sealed with an unknown key ({row.key_id})")
    if not hmac.compare_digest(link_hash(key, previous, row.content_digest), row.link):
        return BrokenLink(sequence, row.row_id, "the link does not follow from the one before")
    return None
