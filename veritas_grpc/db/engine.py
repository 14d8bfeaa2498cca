"""Engine and session factory. Created by the composition root, never at import."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, pool_size: int = 16) -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=4,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Logged errors must not carry e-mails, hashes or tokens from statement parameters.
        hide_parameters=True,
        # A statement must not hold a worker thread for ever; minutes-long work
        # (retention, migrations) runs outside the request path.
        connect_args={"connect_timeout": 5, "options": "-c statement_timeout=30000"},
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
