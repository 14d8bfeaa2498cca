"""Whether the current RPC may read from the replica: its contract's `reads`
(protos/veritas/v1/options.proto), set per call for the unit of work the composition
root hands the services' reads (bootstrap.py). Deny by default: a method whose contract
does not say READ_SOURCE_REPLICA reads the primary, whatever the service code asks."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, Final

import grpc
from grpc_interceptor.server import AsyncServerInterceptor
from veritas.v1 import options_pb2

from veritas_grpc.security.policy import contract_of, method_path, veritas_services

_replica_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "veritas_replica_allowed", default=False
)


def _replica_methods() -> frozenset[str]:
    return frozenset(
        method_path(method)
        for service in veritas_services()
        for method in service.methods
        if (contract := contract_of(method)) is not None
        and contract.reads == options_pb2.READ_SOURCE_REPLICA
    )


REPLICA_METHODS: Final = _replica_methods()


def replica_allowed() -> bool:
    """Whether the RPC being served declares replica reads (False outside an RPC)."""
    return _replica_allowed.get()


class ReadSourceInterceptor(AsyncServerInterceptor):
    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        method_name: str,
    ) -> Any:
        _replica_allowed.set(method_name in REPLICA_METHODS)
        result = method(request_or_iterator, context)
        if hasattr(result, "__aiter__"):
            return result
        return await result
