"""The one place where errors become gRPC statuses.

Domain errors map to their codes with rich details (google.rpc.BadRequest field
violations, google.rpc.RetryInfo). Anything unexpected becomes INTERNAL with a generic
message and the request id, and is logged with its stack trace under that id: no
response carries a trace, SQL or a secret.

A status is bounded whatever the request: it travels in trailers, and a standard client
refuses more than 8 KiB of them (RESOURCE_EXHAUSTED, the real answer and its request id
lost). INVALID_ARGUMENT lists the first MAX_FIELD_VIOLATIONS violations and one saying
how many more there are; paths, descriptions and messages, which may echo the caller's
input, are cut to a few dozen bytes. The worst case is about 5 KiB of trailers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_interceptor.server import AsyncServerInterceptor
from grpc_status import rpc_status

from veritas_grpc.domain import errors
from veritas_grpc.interceptors.principal import principal_or_none
from veritas_grpc.observability import current_call
from veritas_grpc.services.refusal_audit import RESOURCE_FIELDS, Refusal

log = logging.getLogger("veritas.errors")

_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.TooManyAttempts: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


MAX_FIELD_VIOLATIONS = 20
MAX_FIELD_BYTES = 64
MAX_DESCRIPTION_BYTES = 100
MAX_MESSAGE_BYTES = 160
_ELLIPSIS = "…"


def clip(text: str, limit: int) -> str:
    """The text, cut to at most `limit` bytes of UTF-8 (ending in … when cut)."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    kept = encoded[: limit - len(_ELLIPSIS.encode())].decode("utf-8", "ignore")
    return kept + _ELLIPSIS


def _field_violations(
    violations: tuple[errors.FieldViolation, ...],
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    shown = [
        error_details_pb2.BadRequest.FieldViolation(
            field=clip(v.field, MAX_FIELD_BYTES),
            description=clip(v.description, MAX_DESCRIPTION_BYTES),
        )
        for v in violations[:MAX_FIELD_VIOLATIONS]
    ]
    if len(violations) > MAX_FIELD_VIOLATIONS:
        rest = len(violations) - MAX_FIELD_VIOLATIONS
        shown.append(
            error_details_pb2.BadRequest.FieldViolation(
                field="", description=f"{rest} more violations, not listed"
            )
        )
    return shown


def _details(error: errors.DomainError) -> list[any_pb2.Any]:
    if isinstance(error, errors.InvalidArgument):
        if not error.violations:
            return []  # the request as a whole is bad (it did not parse): no field to name
        violations = _field_violations(error.violations)
        return [_pack(error_details_pb2.BadRequest(field_violations=violations))]
    if isinstance(error, errors.TooManyAttempts | errors.Overloaded):
        delay = duration_pb2.Duration(seconds=error.retry_after_seconds)
        return [_pack(error_details_pb2.RetryInfo(retry_delay=delay))]
    return []


def status_for(error: Exception) -> tuple[grpc.StatusCode, str, list[any_pb2.Any]]:
    """The status an exception is answered with (code, message, rich details)."""
    for error_type, code in _CODES.items():
        if isinstance(error, error_type):
            assert isinstance(error, errors.DomainError)
            return code, clip(error.message, MAX_MESSAGE_BYTES), _details(error)
    call = current_call()
    request_id = call.request_id if call else "unknown"
    log.error("unexpected error", exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})", []


# Refusals of a signed-in caller's request for a resource by id, which the audit trail
# keeps (services/refusal_audit.py).
AUDITED_REFUSALS = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)


def named_resources(request: Any) -> dict[str, str]:
    """The resource ids a request names in its top-level fields."""
    if not isinstance(request, Message):
        return {}  # a stream of requests, or one that did not parse
    return {
        name: value
        for name in RESOURCE_FIELDS
        if name in request.DESCRIPTOR.fields_by_name
        and isinstance(value := getattr(request, name), str)
        and value
    }


class ErrorInterceptor(AsyncServerInterceptor):
    def __init__(self, note_refusal: Callable[[Refusal], None] | None = None) -> None:
        self._note_refusal = note_refusal

    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        method_name: str,
    ) -> Any:
        try:
            result = method(request_or_iterator, context)
            if hasattr(result, "__aiter__"):
                return self._guarded_stream(result, context, request_or_iterator, method_name)
            return await result
        except Exception as error:  # noqa: BLE001 - the point of this interceptor
            await self._abort(error, context, request_or_iterator, method_name)

    async def _guarded_stream(
        self,
        responses: AsyncIterator[Any],
        context: grpc.aio.ServicerContext,
        request: Any,
        method_name: str,
    ) -> AsyncIterator[Any]:
        try:
            async for response in responses:
                yield response
        except Exception as error:  # noqa: BLE001
            await self._abort(error, context, request, method_name)

    async def _abort(
        self, error: Exception, context: grpc.aio.ServicerContext, request: Any, method_name: str
    ) -> None:
        if isinstance(error, grpc.aio.AbortError):
            raise error  # the servicer already chose a status
        code, message, details = status_for(error)
        if code in AUDITED_REFUSALS:
            self._audit_refusal(code, request, method_name)
        call = current_call()
        if call is not None:
            call.status = code.name
        if context.done():
            # The client went away mid-stream (e.g. a lease that ended between pages of a
            # stream nobody reads any more): no status can reach it, and sending one
            # fails in grpc's core.
            return
        status = rpc_status.to_status(
            status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
        )
        trailing = tuple(status.trailing_metadata)
        if call is not None:
            trailing += (("x-request-id", call.request_id),)
        await context.abort(code, message, trailing)

    def _audit_refusal(self, code: grpc.StatusCode, request: Any, method_name: str) -> None:
        actor = principal_or_none()
        resources = named_resources(request)
        if self._note_refusal is None or actor is None or not resources:
            return
        call = current_call()
        self._note_refusal(
            Refusal(
                actor=actor,
                method=method_name,
                code=code.name,
                resources=resources,
                peer=call.peer if call else None,
                request_id=call.request_id if call else None,
            )
        )
