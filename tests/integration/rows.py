"""Rows written straight into a test's own database, around the services."""

from __future__ import annotations

import uuid

from sqlalchemy import text

_USER = text(
    "INSERT INTO users (email, password_hash, full_name, role) "
    "VALUES (:e, '!', :e, :r) RETURNING id"
)


def insert_user(connection, email: str, role: str) -> uuid.UUID:
    """An account that cannot sign in (no password hash), named by its e-mail."""
    return connection.execute(_USER, {"e": email, "r": role}).scalar_one()
