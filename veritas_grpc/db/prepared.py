"""Server-side prepared statements for the hottest statements (docs/BENCH_SCALE.md).

psycopg2 sends every statement as text, and PostgreSQL parses and plans it again at
each run: for the teacher dashboard's two reads that was 0.3 and 0.7 ms of their 0.95
and 1.3. A `Prepared` statement is sent once per connection as SQL `PREPARE`, then run
with `EXECUTE name(values)`, through SQLAlchemy still (the values bound, the columns read
with the original statement's types: bytea as bytes, JSON parsed, and so on).

Connections run prepared statements with their generic plan (GENERIC_PLANS, a connect
option of db/engine.py's): one plan for any values, made once. So a statement is prepared
only where one plan suits every value it gets: key lookups and per-key walks, never a
LIMIT whose best plan depends on how many rows match (docs/BENCH_SCALE.md has the
generic plan of each).

A prepared statement lives as long as its connection, whatever the transactions do; the
names a connection holds are kept in its pool record's `info`, which SQLAlchemy clears
when it replaces the connection (a failover, a restart). A statement PostgreSQL no longer
has (a pooler in transaction mode: unsupported, docs/OPERATIONS.md) or whose result
columns a migration changed under it fails once: the connection is dropped and the call
answered UNAVAILABLE, to be retried on a fresh one.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sqlalchemy import Connection, CursorResult, TextClause, bindparam, column, text
from sqlalchemy.dialects.postgresql import psycopg2
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import SelectBase, TextualSelect

from veritas_grpc.domain.errors import Unavailable

GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan"
_PREPARED_HERE = "veritas_prepared"  # the pool record's info: names prepared on it
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# Statement gone (26000), or its result columns changed by DDL since it was planned (0A000).
_STALE = frozenset({"26000", "0A000"})
# Every prepared statement by name: what an EXECUTE in a log or a plan stands for.
REGISTRY: dict[str, Prepared] = {}


class Prepared:
    """A Core statement built once (its values bindparams), prepared per connection."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=psycopg2.dialect())
        for bound in compiled.binds.values():
            if bound.expanding or bound.literal_execute:  # rendered at each run
                raise ValueError(f"{bound.key}: a value rendered at each run cannot be prepared")
        names: list[str] = []  # the values bound at each run, in $n order

        def placeholder(match: re.Match[str]) -> str:
            bound = compiled.binds[match.group(1)]
            if not bound.required:  # a constant of the statement's: part of its text
                literal = compiled.render_literal_value(bound.value, bound.type)
                return str(literal).replace("%", "%%")  # the text still goes through %
            if bound.key not in names:
                names.append(bound.key)
            return f"${names.index(bound.key) + 1}"

        body = _PLACEHOLDER.sub(placeholder, compiled.string)
        self.name = "veritas_" + hashlib.sha256(body.encode()).hexdigest()[:16]
        self.reads = isinstance(statement, SelectBase)
        self.prepare_sql = f"PREPARE {self.name} AS {body}"
        self.run = _execute_clause(self.name, [compiled.binds[n] for n in names], statement)
        REGISTRY[self.name] = self

    def execute(self, connection: Connection, parameters: dict[str, Any]) -> CursorResult[Any]:
        """Run it on this connection (of a session: `session.connection()`), preparing
        it first if the connection has not."""
        try:
            self.prepare_on(connection)
            return connection.execute(self.run, parameters)
        except DBAPIError as failed:
            if getattr(failed.orig, "pgcode", None) not in _STALE:
                raise
            connection.invalidate()
            raise Unavailable("the database changed under a prepared statement; retry") from failed

    def prepare_on(self, connection: Connection) -> None:
        """PREPARE it on this connection unless the connection already has it."""
        prepared = connection.connection.info.setdefault(_PREPARED_HERE, set())
        if self.name not in prepared:
            connection.exec_driver_sql(self.prepare_sql)
            prepared.add(self.name)

    def scalar(self, connection: Connection, parameters: dict[str, Any]) -> Any:
        return self.execute(connection, parameters).scalar()


def _execute_clause(
    name: str, binds: list[BindParameter[Any]], statement: Executable
) -> TextClause | TextualSelect:
    """`EXECUTE name(:a, :b)`, each value bound with the original's type, the result
    columns read by position with the statement's types."""
    values = [bindparam(bound.key, type_=bound.type, required=True) for bound in binds]
    arguments = f"({', '.join(f':{bound.key}' for bound in binds)})" if binds else ""
    clause = text(f"EXECUTE {name}{arguments}").bindparams(*values)
    if not isinstance(statement, SelectBase):
        return clause
    return clause.columns(
        *(column(f"c{i}", c.type) for i, c in enumerate(statement.selected_columns))
    )
