"""AIP-158 pagination: page sizes, and opaque page tokens holding a keyset position.

A token names the listing it came from (its scope), so a token from one call cannot
be replayed against another; the position inside it is only ever used inside the
caller's own access filter, so a forged position could show nothing the caller could
not list anyway.

Tokens are signed (HMAC-SHA256) and the signature is checked before anything in them
is parsed: the server only ever parses JSON it wrote itself, so a client's token can
neither crash the parser (a deeply nested array is a RecursionError) nor steer a query
with a position the server never handed out. Any token the server did not issue is
INVALID_ARGUMENT on page_token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from veritas_grpc.domain.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
T = TypeVar("T")
# Far above any token this server issues (a keyset of a timestamp or a title, and an
# id); longer ones are refused before any work is spent on them.
MAX_TOKEN_CHARS = 2048
NOT_A_TOKEN = "is not a page token of this listing"


class PageTokenSigner:
    """Signs page tokens and opens only those it signed. Server processes sharing a key
    accept each other's tokens (a client's next page may reach another process)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, scope: str, position: Sequence[Any]) -> str:
        payload = json.dumps({"s": scope, "k": [str(item) for item in position]}).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def open(self, token: str, scope: str) -> list[str]:
        """The position in a token this signer issued for scope; InvalidArgument else."""
        payload = self._verified_payload(token)
        decoded = json.loads(payload)  # our own JSON: a flat object of strings
        if decoded["s"] != scope:
            raise InvalidArgument.of("page_token", NOT_A_TOKEN)
        return list(decoded["k"])

    def _verified_payload(self, token: str) -> bytes:
        encoded_payload, dot, encoded_mac = token.partition(".")
        try:
            if len(token) > MAX_TOKEN_CHARS or not dot:
                raise ValueError("not a signed token")
            payload, mac = _b64decode(encoded_payload), _b64decode(encoded_mac)
        except (binascii.Error, ValueError):
            raise InvalidArgument.of("page_token", NOT_A_TOKEN) from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidArgument.of("page_token", NOT_A_TOKEN)
        return payload

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def page_token_key(secret: str) -> bytes:
    """The page-token key derived from a server secret (the JWT secret, or a dedicated
    one): a key of its own, so a page token's MAC is never a valid signature of any
    other kind, and every process sharing the secret derives the same key."""
    return hmac.new(secret.encode(), b"veritas page tokens v1", hashlib.sha256).digest()


# Services call page_request and paginate as plain functions, so the signer is set once
# at start-up by the composition root (use_page_token_key). Until then, and in code
# that never starts a server, a random key: tokens then work within the process only.
_signer = PageTokenSigner(secrets.token_bytes(32))


def use_page_token_key(key: bytes) -> None:
    global _signer
    _signer = PageTokenSigner(key)


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
    after = _signer.open(page_token, scope) if page_token else None
    return PageRequest(page_size or default, after, scope)


def position(request: PageRequest, *types: Callable[[str], Any]) -> tuple[Any, ...] | None:
    """The typed keyset position of a page request (None on the first page). A signed
    token that does not hold such a position (one of another version) is refused like
    any bad token."""
    if request.after is None:
        return None
    try:
        if len(request.after) != len(types):
            raise ValueError("wrong length")
        return tuple(kind(value) for kind, value in zip(types, request.after, strict=True))
    except (ValueError, TypeError):
        raise InvalidArgument.of("page_token", NOT_A_TOKEN) from None


def encode_token(scope: str, position: Sequence[Any]) -> str:
    return _signer.sign(scope, position)


def paginate(rows: list[T], request: PageRequest, key_of: Callable[[T], Sequence[Any]]) -> Page[T]:
    """rows were fetched with limit size + 1: the extra row only says there is more."""
    if len(rows) <= request.size:
        return Page(rows, "")
    items = rows[: request.size]
    return Page(items, encode_token(request.scope, key_of(items[-1])))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # validate=True: stray characters are an error, not silently skipped.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
