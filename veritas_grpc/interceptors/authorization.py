"""Role-based access: the policy table decides; a method missing from it is refused."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from veritas_grpc.domain.errors import PermissionDenied
from veritas_grpc.interceptors.principal import current_principal
from veritas_grpc.security.policy import allowed_roles, is_public

log = logging.getLogger("veritas.authz")


class AuthorizationInterceptor(AsyncServerInterceptor):
    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        method_name: str,
    ) -> Any:
        if not is_public(method_name):
            principal = current_principal()
            if principal.role not in allowed_roles(method_name):
                log.warning(
                    "permission denied",
                    extra={
                        "fields": {"role": principal.role.value, "user": str(principal.user_id)}
                    },
                )
                raise PermissionDenied(f"the {principal.role.value} role may not call this method")
        result = method(request_or_iterator, context)
        if hasattr(result, "__aiter__"):
            return result
        return await result
