"""The current RPC's token check (domain.identity.TokenCheck), left by the
authentication interceptor for the call's first transaction on the primary to make:
one unit of work per call instead of a thread hop and a transaction of its own for the
check (docs/BENCH_SCALE.md). The composition root hands `current` to the primary's
session factory (repositories.auth_tokens.check_tokens_at_begin)."""

from __future__ import annotations

import contextvars

from veritas_grpc.domain.identity import Principal, TokenCheck

_current: contextvars.ContextVar[TokenCheck | None] = contextvars.ContextVar(
    "veritas_token_check", default=None
)


def defer(principal: Principal) -> TokenCheck:
    """Leave the current call's token check to its first transaction on the primary.
    The call's worker threads run in copies of its context: they share this object."""
    check = TokenCheck(principal)
    _current.set(check)
    return check


def current() -> TokenCheck | None:
    """The current call's token check (None outside a unary call)."""
    return _current.get()
