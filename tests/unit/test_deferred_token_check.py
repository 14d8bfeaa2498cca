"""The authentication interceptor's unary path: the token's revocation is checked by the
call's first transaction (here: the handler, standing in for it) or at the call's end,
once, and a refusal replaces whatever the call answered, even if the call went on."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from veritas_grpc.domain.errors import InvalidArgument, Unauthenticated
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.interceptors.authentication import AuthenticationInterceptor
from veritas_grpc.services import token_checks

UNARY = "/veritas.v1.AuthService/GetCurrentUser"


class InlineRunner:
    async def run(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


class Auth:
    def __init__(self, revoked: bool) -> None:
        self.revoked = revoked
        self.checks = 0
        self.principal = Principal(
            uuid.uuid4(), Role.STUDENT, "jti", uuid.uuid4(), datetime.now(UTC) + timedelta(hours=1)
        )

    def verify(self, token: str) -> Principal:
        assert token == "good-signature"
        return self.principal

    def ensure_unrevoked(self, principal: Principal) -> None:
        self.checks += 1
        if self.revoked:
            raise Unauthenticated()


class Context:
    def invocation_metadata(self):
        return (("authorization", "Bearer good-signature"),)


def _call(auth: Auth, handler):
    interceptor = AuthenticationInterceptor(auth, InlineRunner())  # type: ignore[arg-type]
    return asyncio.run(interceptor.intercept(handler, b"request", Context(), UNARY))


def _first_transaction(refused: bool) -> None:
    """What the primary's first transaction does with the pending check."""
    check = token_checks.pending()
    assert check is not None
    check.done, check.refused = True, refused


async def answers(request, context):
    return b"answer"


async def refuses_the_request(request, context):
    raise InvalidArgument.of("exam_id", "must be a UUID")


async def checked_in_its_transaction(request, context):
    _first_transaction(refused=False)
    return b"answer"


async def goes_on_after_a_refusal(request, context):
    try:
        _first_transaction(refused=True)
        raise Unauthenticated()
    except Unauthenticated:
        return b"answer anyway"  # a use case that swallowed the refusal


def test_a_call_without_a_transaction_is_checked_at_its_end():
    auth = Auth(revoked=False)
    assert _call(auth, answers) == b"answer"
    assert auth.checks == 1


def test_a_call_checked_by_its_transaction_is_not_checked_again():
    auth = Auth(revoked=False)
    assert _call(auth, checked_in_its_transaction) == b"answer"
    assert auth.checks == 0


@pytest.mark.parametrize("handler", [answers, refuses_the_request])
def test_a_revoked_token_replaces_the_answer_and_the_error(handler):
    auth = Auth(revoked=True)
    with pytest.raises(Unauthenticated):
        _call(auth, handler)
    assert auth.checks == 1


def test_a_refusal_sticks_though_the_call_went_on():
    auth = Auth(revoked=False)
    with pytest.raises(Unauthenticated):
        _call(auth, goes_on_after_a_refusal)
    assert auth.checks == 0
