"""The authenticated caller of the current RPC, set by the authentication interceptor."""

from __future__ import annotations

import contextvars

from veritas_grpc.domain.errors import Unauthenticated
from veritas_grpc.domain.identity import Principal

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "veritas_principal", default=None
)


def set_principal(principal: Principal | None) -> None:
    _principal.set(principal)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:
        # Only reachable if a method is wrongly listed as public: fail closed.
        raise Unauthenticated()
    return principal


def principal_or_none() -> Principal | None:
    """The caller if one was authenticated (outer interceptors, after the call)."""
    return _principal.get()
