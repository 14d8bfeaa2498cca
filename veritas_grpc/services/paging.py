"""AIP-158 pagination: page sizes, and opaque page tokens holding a keyset position.

A token names the listing it came from (its scope), so a token from one call cannot
be replayed against another; the position inside it is only ever used inside the
caller's own access filter, so a forged position shows nothing the caller could not
list anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from veritas_grpc.domain.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    size: int
    after: list[str] | None  # the keyset position, as strings
    scope: str


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str


def page_request(
    page_size: int,
    page_token: str,
    scope: str,
    default: int = DEFAULT_PAGE_SIZE,
    maximum: int = MAX_PAGE_SIZE,
    field: str = "page_size",
) -> PageRequest:
    if not 0 <= page_size <= maximum:
        raise InvalidArgument.of(field, f"must be between 0 and {maximum}")
    after = _decode(page_token, scope) if page_token else None
    return PageRequest(page_size or default, after, scope)


def _decode(token: str, scope: str) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
        position = decoded["k"]
        valid = decoded["s"] == scope and isinstance(position, list)
    except (binascii.Error, ValueError, KeyError, TypeError):
        valid = False
    if not valid or not all(isinstance(item, str) for item in position):
        raise InvalidArgument.of("page_token", "is not a page token of this listing")
    return position


def position(request: PageRequest, *types: Callable[[str], Any]) -> tuple[Any, ...] | None:
    """The typed keyset position of a page request (None on the first page). A token
    that decodes but does not hold such a position is refused like any bad token."""
    if request.after is None:
        return None
    try:
        if len(request.after) != len(types):
            raise ValueError("wrong length")
        return tuple(kind(value) for kind, value in zip(types, request.after, strict=True))
    except (ValueError, TypeError):
        raise InvalidArgument.of("page_token", "is not a page token of this listing") from None


def encode_token(scope: str, position: Sequence[Any]) -> str:
    raw = json.dumps({"s": scope, "k": [str(item) for item in position]}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def paginate(rows: list[T], request: PageRequest, key_of: Callable[[T], Sequence[Any]]) -> Page[T]:
    """rows were fetched with limit size + 1: the extra row only says there is more."""
    if len(rows) <= request.size:
        return Page(rows, "")
    items = rows[: request.size]
    return Page(items, encode_token(request.scope, key_of(items[-1])))
