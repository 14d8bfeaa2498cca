"""db/prepared.py on a real PostgreSQL: a statement is prepared once per connection and
kept through rollbacks and failed transactions; a new connection (the old one killed)
prepares it again unseen; a migration changing its result columns under it costs one
UNAVAILABLE and the connection, not a broken server; it runs its generic plan; a list
of values is refused when the statement is built."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, column, create_engine, event, select, table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from veritas_grpc.db.engine import make_engine
from veritas_grpc.db.prepared import Prepared
from veritas_grpc.domain.errors import Unavailable

ITEMS = table("items", column("id"), column("label"))
BY_ID = Prepared(select(ITEMS.c.id, ITEMS.c.label).where(ITEMS.c.id == bindparam("id")))


@pytest.fixture
def engine(fresh_database):
    engine = make_engine(fresh_database("prepared"), pool_size=1)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE items (id int PRIMARY KEY, label text)"))
        connection.execute(text("INSERT INTO items VALUES (1, 'one'), (2, 'two')"))
    prepares: list[str] = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda _c, _k, sql, *_: prepares.append(sql) if sql.startswith("PREPARE") else None,
    )
    engine.prepares = prepares  # type: ignore[attr-defined]
    yield engine
    engine.dispose()


def _label(engine, item: int) -> str:
    with engine.connect() as connection:
        return BY_ID.execute(connection, {"id": item}).one().label


def test_prepared_once_per_connection_through_rollbacks_and_failures(engine):
    assert [_label(engine, 1), _label(engine, 2)] == ["one", "two"]  # each a rollback
    with engine.connect() as connection, pytest.raises(DBAPIError):
        BY_ID.execute(connection, {"id": 1})
        connection.execute(text("SELECT 1 / 0"))
    assert _label(engine, 2) == "two"
    assert len(engine.prepares) == 1


def test_a_new_connection_prepares_it_again(engine):
    assert _label(engine, 1) == "one"
    killer = create_engine(engine.url, poolclass=NullPool)
    with killer.connect() as other:  # the pooled connection holding it dies
        # Wait until it has: pg_terminate_backend only signals, and a backend still
        # exiting has not yet closed the socket by which the pool tells a dead one.
        other.execute(
            text(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    killer.dispose()
    assert _label(engine, 1) == "one"
    assert len(engine.prepares) == 2


def test_a_changed_result_type_costs_one_unavailable_and_the_connection(engine):
    assert _label(engine, 1) == "one"
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE items ALTER COLUMN label TYPE varchar(20)"))
    with pytest.raises(Unavailable):
        _label(engine, 1)
    assert _label(engine, 1) == "one"  # on a new connection, prepared anew
    assert len(engine.prepares) == 2


def test_it_runs_its_generic_plan(engine):
    with engine.connect() as connection:
        for item in (1, 2, 1):
            BY_ID.execute(connection, {"id": item})
        plans = connection.execute(
            text("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = :n"),
            {"n": BY_ID.name},
        ).one()
    assert (plans.generic_plans, plans.custom_plans) == (3, 0)


def test_a_list_of_values_cannot_be_prepared():
    with pytest.raises(ValueError, match="ids"):
        Prepared(select(ITEMS.c.id).where(ITEMS.c.id.in_(bindparam("ids", expanding=True))))
