"""The authentication interceptor's unary path: the token's revocation is checked by the
call's first transaction (here: the handler, standing in for it) or at the call's end,
once, and a refusal replaces whatever the call answered, even if the call went on."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from veritas_grpc.domain.errors import InvalidArgument, Unauthenticated, Unavailable
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

    def authenticate(self, token: str) -> Principal:
        self.ensure_unrevoked(self.verify(token))
        return self.principal


class Context:
    def invocation_metadata(self):
        return (("authorization", "Bearer good-signature"),)


def _call(auth: Auth, handler, checked_first: frozenset[str] = frozenset()):
    interceptor = AuthenticationInterceptor(
        auth,  # type: ignore[arg-type]
        InlineRunner(),  # type: ignore[arg-type]
        checked_first=checked_first,
    )
    return asyncio.run(interceptor.intercept(handler, b"request", Context(), UNARY))


def _first_transaction(refused: bool) -> None:
    """What the primary's first transaction does with the pending check."""
    check = token_checks.current()
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


async def meets_an_outage(request, context):
    raise Unavailable("the database is unavailable; retry later")


async def meets_an_outage_after_a_refusal(request, context):
    _first_transaction(refused=True)
    raise Unavailable("the database is unavailable; retry later")


def test_an_outage_is_answered_without_a_second_wait_for_the_database():
    auth = Auth(revoked=True)
    with pytest.raises(Unavailable):
        _call(auth, meets_an_outage)
    assert auth.checks == 0


def test_an_outage_after_a_refusal_is_still_unauthenticated():
    with pytest.raises(Unauthenticated):
        _call(Auth(revoked=False), meets_an_outage_after_a_refusal)


def test_a_method_checked_first_runs_only_after_its_check():
    ran: list[str] = []

    async def handler(request, context):
        ran.append("ran")
        return b"answer"

    with pytest.raises(Unauthenticated):
        _call(Auth(revoked=True), handler, checked_first=frozenset({UNARY}))
    assert ran == []
    assert _call(Auth(revoked=False), handler, checked_first=frozenset({UNARY})) == b"answer"
