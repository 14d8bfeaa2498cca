"""Engine and session factory. Created by the composition root, never at import."""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, pool_size: int = 16) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=4,
        pool_recycle=1800,
        # Logged errors must not carry e-mails, hashes or tokens from statement parameters.
        hide_parameters=True,
        # A statement must not hold a worker thread for ever; minutes-long work
        # (retention, migrations) runs outside the request path.
        connect_args={"connect_timeout": 5, "options": "-c statement_timeout=30000"},
    )
    dialect = engine.dialect

    # Instead of pool_pre_ping's SELECT 1 at every checkout (a quarter of a millisecond,
    # up to three times per call), a pooled connection is pinged only when its socket
    # says the server spoke. An idle connection has nothing to read; when the server
    # ends it (a restart, a crash, a failover, pg_terminate_backend,
    # idle_session_timeout) the socket turns readable: a FATAL notice, the end of the
    # stream, a reset. A failed ping replaces it and every older one, as pre-ping
    # does. A peer gone without a word (a host powered off) leaves the socket silent:
    # the first statement fails, the call answers UNAVAILABLE and the pool renews its
    # connections, where a ping would have waited for the dead host as long.
    @event.listens_for(engine, "checkout")
    def ping_if_the_server_spoke(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.closed or _readable(dbapi_connection.fileno()):
            try:
                dialect.do_ping(dbapi_connection)
            except Exception as failed:
                raise InvalidatePoolError("the server closed a pooled connection") from failed

    return engine


def _readable(fd: int) -> bool:
    """Whether anything (data, the end of the stream, an error) waits on the socket."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
