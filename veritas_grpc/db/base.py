"""Declarative base with a naming convention, so constraint names are stable in migrations."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def is_partition(name: str | None, type_: str) -> bool:
    """A daily partition of a partitioned table: created by code, not described by models."""
    return type_ == "table" and bool(name) and name.startswith("monitoring_events_p")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Fetch server-made values (defaults, updated_at) with RETURNING as rows are written:
    # services build their views from objects whose session may be closed, which must
    # never need a reload.
    __mapper_args__ = {"eager_defaults": True}
