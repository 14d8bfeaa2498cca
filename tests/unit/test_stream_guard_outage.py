"""A stream's token re-check during a database outage does not end the stream (issue
10, item 12: a watch outlives an outage); a revoked token still ends it once the
database answers, and an expired one at once."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from veritas_grpc.domain.errors import Unauthenticated, Unavailable
from veritas_grpc.interceptors import authentication
from veritas_grpc.interceptors.authentication import _StreamGuard


class InlineRunner:
    async def run(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


class Auth:
    def __init__(self) -> None:
        self.answers: list[Exception | None] = []

    def authenticate(self, token: str) -> None:
        answer = self.answers.pop(0)
        if answer is not None:
            raise answer


class Principal:
    def __init__(self, expires_at: datetime) -> None:
        self.user_id = uuid.uuid4()
        self.token_expires_at = expires_at


def test_a_recheck_during_an_outage_keeps_the_stream(monkeypatch):
    monkeypatch.setattr(authentication, "STREAM_RECHECK_SECONDS", 0.0)
    auth = Auth()
    auth.answers = [Unavailable("down"), Unavailable("down"), None, Unauthenticated("revoked")]
    principal = Principal(datetime.now(UTC) + timedelta(minutes=5))
    guard = _StreamGuard("token", principal, auth, InlineRunner())  # type: ignore[arg-type]

    async def responses():
        for n in range(10):
            yield n

    async def scenario():
        received = []
        with pytest.raises(Unauthenticated):
            async for item in guard.responses(responses()):
                received.append(item)
        return received

    assert asyncio.run(scenario()) == [0, 1, 2]  # the revocation ends it, the outage did not
