"""Alembic environment: online migrations only, one transaction per migration run."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from veritas_grpc.db import models  # noqa: F401  (registers every table on the metadata)
from veritas_grpc.db.base import Base, is_partition

config = context.config


def _database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from veritas_grpc.db.locate import database_url

    return database_url()


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            include_object=lambda obj, name, type_, reflected, compare_to: (
                not is_partition(name, type_)
            ),
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
