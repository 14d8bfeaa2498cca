"""Engine and session factory. Created by the composition root, never at import."""

from __future__ import annotations

import select
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from veritas_grpc.db.prepared import GENERIC_PLANS


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
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout=30000 {GENERIC_PLANS}",
            # Over TCP: a peer gone silent is found within a minute, idle or sending.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 30000,
        },
    )
    dialect = engine.dialect

    # Instead of pool_pre_ping's SELECT 1 at every checkout (a quarter of a millisecond,
    # up to three times per call), a pooled connection is pinged only when it may have
    # died: its socket says the server spoke, or it sat idle long enough for a firewall,
    # a NAT or a load balancer to forget it (their idle timeouts are minutes) or for its
    # host to reboot. An idle connection has nothing to read; when the server ends it (a
    # restart, a crash, a failover, pg_terminate_backend, idle_session_timeout) the
    # socket turns readable: a FATAL notice, the end of the stream, a reset. A failed
    # ping replaces it and every older one, as pre-ping does. Connections in use every
    # few seconds, as a serving pool's are, are never pinged.
    @event.listens_for(engine, "checkout")
    def ping_if_it_may_have_died(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)  # None: new, just connected
        idle = 0.0 if checked_in is None else time.monotonic() - checked_in
        if idle > PING_AFTER_IDLE_SECONDS or _spoke(dbapi_connection):
            try:
                dialect.do_ping(dbapi_connection)
            except Exception as failed:
                raise InvalidatePoolError("a pooled connection was closed") from failed

    @event.listens_for(engine, "checkin")
    def note_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    return engine


PING_AFTER_IDLE_SECONDS = 10.0
_CHECKED_IN = "veritas_checked_in_at"


def _spoke(dbapi_connection: Any) -> bool:
    return bool(dbapi_connection.closed) or _readable(dbapi_connection.fileno())


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
