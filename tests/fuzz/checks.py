"""What must hold for every answer, however bad the request, and the database
fingerprint that shows whether a failed call wrote anything."""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
from sqlalchemy import Engine, text

from tests.fuzz.rpcs import Answer

NEVER_ANSWERED = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})

# What an answer must not reveal: the database and its driver, Python internals.
LEAKS = (
    re.compile(r"sqlalchemy|psycopg|postgres|traceback|File \"|/\S*\.py\b|line \d+, in ", re.I),
    re.compile(
        r"\bSQL|\b(?:SELECT|INSERT INTO|UPDATE|DELETE FROM|WHERE)\s"
        r"|violates (?:\w+ )*constraint|relation \"|column \"|syntax error at|DETAIL:"
        r"|<class '|\b[A-Z][A-Za-z]*(?:Error|Exception|Warning)\b|StopIteration"
        r"|\bErrno\b|object at 0x"
    ),
)

# The answers grpc core gives itself, before or beside any handler, so with no
# x-request-id (README, "Errors"): a message over VERITAS_MAX_MESSAGE_BYTES either way,
# and metadata over grpc's limit.
CORE_ANSWERS = re.compile(
    r"(?:Received|Sent) message larger than max|received metadata size exceeds", re.IGNORECASE
)

# Tables a failed call writes on purpose:
# - audit_logs: denied and failed calls are audited (sign-in failures, refusals while
#   locked, lockouts), and audit_chain_head, the hash chain's head, moves with each
#   audit row;
# - login_throttles / sign_in_throttles: failed sign-ins (and Register calls, per client
#   address) are counted so that guessing is throttled; the count is the point.
WRITTEN_BY_FAILED_CALLS = frozenset(
    {"audit_logs", "audit_chain_head", "login_throttles", "sign_in_throttles"}
)


def leaks(answer: Answer, request_text: str) -> list[str]:
    """Words in the answer that reveal internals (unless the request itself held them:
    a bad field's value may be echoed, cut short)."""
    found = {m.group(0) for pattern in LEAKS for m in pattern.finditer(answer.text())}
    return sorted(word for word in found if word.lower() not in request_text.lower())


def problems(answer: Answer, request_text: str) -> list[str]:
    """What is wrong with one answer to a fuzzed request; empty when nothing is."""
    found = []
    if answer.code in NEVER_ANSWERED:
        found.append(f"{answer.code.name}: {answer.message!r}")
    if answer.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        found.append(f"no answer within the deadline ({answer.seconds:.1f} s)")
    words = leaks(answer, request_text)
    if words:
        found.append(f"the answer reveals internals {words}: {answer.text()[:500]!r}")
    from_core = answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED and CORE_ANSWERS.search(
        answer.message
    )
    if not answer.metadata.get("x-request-id") and not from_core:
        found.append(f"no x-request-id ({answer.code.name}: {answer.message[:200]!r})")
    return found


@dataclass(frozen=True)
class Fingerprint:
    """Per table: its row count and a sum over its rows' physical positions (ctid and,
    for partitioned tables, the partition). An insert changes the count, a delete too,
    and an update writes a new row version at a new position, so any write shows,
    at the cost of one scan of small tables."""

    tables: dict[str, tuple[int, int]]

    def changed_since(self, before: Fingerprint) -> list[str]:
        return sorted(t for t in self.tables if self.tables[t] != before.tables.get(t))


class Database:
    """The fuzz test's own database, read over a connection of the test's own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        with engine.connect() as connection:
            names = connection.execute(
                text(
                    "SELECT c.relname FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
                    " AND NOT c.relispartition ORDER BY c.relname"
                )
            ).scalars()
            self.tables = [name for name in names if name not in WRITTEN_BY_FAILED_CALLS]
        self._query = text(
            " UNION ALL ".join(
                f"SELECT '{name}', count(*),"
                f' coalesce(sum(hashtext(tableoid::text || ctid::text)), 0) FROM "{name}"'
                for name in self.tables
            )
        )

    def fingerprint(self) -> Fingerprint:
        with self._engine.connect() as connection:
            rows = connection.execute(self._query).all()
        return Fingerprint({name: (count, total) for name, count, total in rows})

    def forget_sign_in_failures(self) -> None:
        """Empty the sign-in throttles, so that setup can sign in again after the fuzzed
        calls have locked its accounts or its address (this database is the test's own)."""
        with self._engine.begin() as connection:
            for name in self.throttle_tables():
                connection.execute(text(f'DELETE FROM "{name}"'))

    def throttle_tables(self) -> list[str]:
        with self._engine.connect() as connection:
            names = connection.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                    " AND tablename LIKE '%throttle%'"
                )
            ).scalars()
            return list(names)
