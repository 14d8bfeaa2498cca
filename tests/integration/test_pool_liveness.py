"""The pool's liveness check (db/engine.py): a pooled connection the server ended is
noticed at checkout and replaced, the call never sees it; a healthy one is handed out
without a round trip."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, text

from veritas_grpc.db.engine import make_engine, make_session_factory


@pytest.fixture
def engine(fresh_database):
    engine = make_engine(fresh_database("pool_liveness"), pool_size=3)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch) -> list[int]:
    """Each ping the checkout sends, by the backend it went to."""
    sent: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection) -> bool:
        sent.append(dbapi_connection.info.backend_pid)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return sent


def _backend(engine: Engine) -> int:
    with make_session_factory(engine)() as session:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(engine: Engine, pids: list[int]) -> None:
    """As a restart, a failover or an administrator would: from another connection,
    waiting until each backend has exited (its socket closed)."""
    outsider = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    with outsider.connect() as connection:
        ends = "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM unnest(:p) pid"
        ended = connection.execute(text(ends), {"p": pids}).scalar_one()
    outsider.dispose()
    assert ended == len(pids)


def test_a_healthy_connection_is_reused_without_a_ping(engine, pings):
    first = _backend(engine)
    assert [_backend(engine) for _ in range(5)] == [first] * 5
    assert pings == []


def test_a_connection_the_server_ended_is_replaced_before_use(engine, pings):
    first = _backend(engine)
    _terminate(engine, [first])
    replacement = _backend(engine)  # no error: the dead connection never reached the call
    assert replacement != first
    assert pings == [first]
    assert _backend(engine) == replacement and pings == [first]


def test_every_pooled_connection_ended_at_once_is_replaced(engine, pings):
    """A restart ends them all: the first checkout that notices renews the pool."""
    held = [engine.connect() for _ in range(3)]
    pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in held]
    for connection in held:
        connection.close()
    _terminate(engine, pids)
    fresh = {_backend(engine) for _ in range(3)}
    assert fresh.isdisjoint(pids)
    assert len(pings) == 1  # the older connections were discarded unpinged
