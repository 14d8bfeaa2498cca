"""Run the Alembic migrations from code (CLI, tests, `make run`).

They live in the top-level migrations/; veritas_grpc/migrations links to it, so a
checkout and an installed wheel (which carries them as veritas_grpc/migrations) find
them at the same place beside this package.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import veritas_grpc

MIGRATIONS_DIR = Path(veritas_grpc.__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is Alembic's interpolation character; URLs may contain it (escaped passwords).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
