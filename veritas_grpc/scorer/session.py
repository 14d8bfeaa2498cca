"""Signing in as the SERVICE account, and staying signed in: the access token is
refreshed (AuthService.Refresh, which rotates the refresh token) before it expires, and
the scorer signs in again when its session ended (a refresh refused)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc
from veritas.v1 import auth_pb2, auth_pb2_grpc

from veritas_grpc.scorer.backoff import Backoff

log = logging.getLogger("veritas.scorer")
# Refresh when less than this share of the access token's life is left (at least 10 s).
REFRESH_AT_REMAINING = 1 / 3
CALL_TIMEOUT_SECONDS = 30.0
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


class SignInRefused(Exception):
    """The e-mail and password do not sign in: retrying will not help."""


class Session:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        email: str,
        password: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._email = email
        self._password = password
        self._clock = clock
        self._lock = asyncio.Lock()
        self._tokens: auth_pb2.TokenPair | None = None
        self._refresh_at = 0.0

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        async with self._lock:
            if self._tokens is None:
                await self._sign_in()
            elif self._clock() >= self._refresh_at:
                await self._refresh()
            assert self._tokens is not None
            return (("authorization", f"Bearer {self._tokens.access_token}"),)

    async def renew(self, refused_token: str | None = None) -> None:
        """After an UNAUTHENTICATED answer: a new access token (unless another call has
        already got one since)."""
        async with self._lock:
            if self._tokens is not None and self._tokens.access_token == refused_token:
                await self._refresh()

    def _keep(self, tokens: auth_pb2.TokenPair) -> None:
        self._tokens = tokens
        expires = tokens.access_token_expire_time.ToSeconds()
        life = max(0.0, expires - self._clock())
        self._refresh_at = expires - max(10.0, life * REFRESH_AT_REMAINING)

    async def _sign_in(self) -> None:
        backoff = Backoff()
        request = auth_pb2.LoginRequest(email=self._email, password=self._password)
        while True:
            try:
                answer = await self._auth.Login(request, timeout=CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RETRYABLE | {grpc.StatusCode.DEADLINE_EXCEEDED}:
                    raise SignInRefused(f"{error.code().name}: {error.details()}") from None
                delay = backoff.next_delay()
                log.warning(
                    "sign-in failed, retrying",
                    extra={"fields": {"status": error.code().name, "retry_in": round(delay, 2)}},
                )
                await asyncio.sleep(delay)
                continue
            self._keep(answer.tokens)
            log.info("signed in", extra={"fields": {"email": self._email}})
            return

    async def _refresh(self) -> None:
        assert self._tokens is not None
        request = auth_pb2.RefreshRequest(refresh_token=self._tokens.refresh_token)
        try:
            answer = await self._auth.Refresh(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            if error.code() in _RETRYABLE and self._clock() < self._tokens_expiry():
                return  # the current token still works: try again on the next call
            # The session ended (expired, logged out, revoked): sign in afresh.
            await self._sign_in()
            return
        self._keep(answer.tokens)

    def _tokens_expiry(self) -> float:
        assert self._tokens is not None
        return float(self._tokens.access_token_expire_time.ToSeconds())
