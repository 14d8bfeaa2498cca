"""Bearer-token authentication for every non-public method, unary and streaming alike.

A stream is authenticated when it opens and stays bound to its token: once the token
expires, or when a re-check (every STREAM_RECHECK_SECONDS, at the next message in
either direction) finds it revoked, the stream ends with UNAUTHENTICATED and the client
reconnects with a fresh token. A re-check the database cannot answer does not end the
stream (a watch outlives an outage); it is tried again at the next message, and the
token's expiry still applies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.errors import Unauthenticated, Unavailable
from veritas_grpc.domain.identity import Principal
from veritas_grpc.interceptors.metadata import metadata_value
from veritas_grpc.interceptors.principal import set_principal
from veritas_grpc.security.policy import is_public
from veritas_grpc.services.auth import AuthService

BEARER = "bearer "
STREAM_RECHECK_SECONDS = 30.0


def bearer_token(context: grpc.aio.ServicerContext) -> str:
    header = metadata_value(context, "authorization")
    if not header or header[: len(BEARER)].lower() != BEARER:
        raise Unauthenticated("missing bearer token")
    return header[len(BEARER) :].strip()


class _StreamGuard:
    """Keeps checking, while a stream lasts, that its token is still good."""

    def __init__(self, token: str, principal: Principal, auth: AuthService, runner: BlockingRunner):
        self._token = token
        self._expires_at = principal.token_expires_at
        self._auth = auth
        self._runner = runner
        self._checked_at = time.monotonic()

    async def check(self) -> None:
        if datetime.now(UTC) >= self._expires_at:
            raise Unauthenticated("access token expired; reconnect with a fresh token")
        if time.monotonic() - self._checked_at >= STREAM_RECHECK_SECONDS:
            try:
                await self._runner.run(self._auth.authenticate, self._token)
            except Unavailable:
                return  # the database is down: check again at the next message
            self._checked_at = time.monotonic()

    async def requests(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            await self.check()
            yield request

    async def responses(self, responses: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for response in responses:
            await self.check()
            yield response


class AuthenticationInterceptor(AsyncServerInterceptor):
    def __init__(self, auth: AuthService, runner: BlockingRunner) -> None:
        self._auth = auth
        self._runner = runner

    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        method_name: str,
    ) -> Any:
        guard = None
        if is_public(method_name):
            principal = None
        else:
            token = bearer_token(context)
            principal = await self._runner.run(self._auth.authenticate, token)
            guard = _StreamGuard(token, principal, self._auth, self._runner)
            if hasattr(request_or_iterator, "__aiter__"):
                request_or_iterator = guard.requests(request_or_iterator)
        # Each RPC runs in its own asyncio task, so the principal stays with this call,
        # also while a response stream is produced after this method returns.
        set_principal(principal)
        result = method(request_or_iterator, context)
        if hasattr(result, "__aiter__"):
            return guard.responses(result) if guard else result
        return await result
