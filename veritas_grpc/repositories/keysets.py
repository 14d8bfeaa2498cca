"""Keyset positions for statements built once: the page's last row as bound parameters."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, bindparam, tuple_


def past(
    columns: tuple[Any, ...], names: tuple[str, ...], newest_first: bool = False
) -> ColumnElement[bool]:
    """Rows after the position bound as `names` (one per column, typed as it), in the
    columns' order: ascending, or descending with newest_first."""
    bound = tuple_(
        *(bindparam(name, type_=column.type) for column, name in zip(columns, names, strict=True))
    )
    return tuple_(*columns) < bound if newest_first else tuple_(*columns) > bound
