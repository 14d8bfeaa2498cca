"""Constraint violations become the domain's Conflict, so that use cases can answer a
lost race without knowing the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError

from veritas_grpc.domain.errors import Conflict


@contextmanager
def conflict_on_violation(message: str) -> Iterator[None]:
    """Raise Conflict(message) for an IntegrityError of the statements inside. The
    session is then unusable until rolled back, which ending the unit of work does."""
    try:
        yield
    except IntegrityError as error:
        raise Conflict(message) from error
