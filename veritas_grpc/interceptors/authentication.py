"""Bearer-token authentication for every non-public method, unary and streaming alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from veritas_grpc.api.blocking import BlockingRunner
from veritas_grpc.domain.errors import Unauthenticated
from veritas_grpc.interceptors.metadata import metadata_value
from veritas_grpc.interceptors.principal import set_principal
from veritas_grpc.security.policy import is_public
from veritas_grpc.services.auth import AuthService

BEARER = "bearer "


def bearer_token(context: grpc.aio.ServicerContext) -> str:
    header = metadata_value(context, "authorization")
    if not header or not header[: len(BEARER)].lower() == BEARER:
        raise Unauthenticated("missing bearer token")
    return header[len(BEARER) :].strip()


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
        if is_public(method_name):
            principal = None
        else:
            token = bearer_token(context)
            principal = await self._runner.run(self._auth.authenticate, token)
        # Each RPC runs in its own asyncio task, so the principal stays with this call,
        # also while a response stream is produced after this method returns.
        set_principal(principal)
        result = method(request_or_iterator, context)
        if hasattr(result, "__aiter__"):
            return result
        return await result
