"""Requests refused for what they are, whatever the method: bytes that do not parse, and
strings holding U+0000, which PostgreSQL cannot store in a text column.

grpc deserializes a request before any interceptor's intercept() runs, and answers a
parse failure itself: UNKNOWN with the exception class in its text, no request id, an
ERROR trace from grpc's internals in the log. So this interceptor, the innermost one,
gives each method a deserializer that never raises: a request that cannot be accepted
becomes a Refused value, which travels through the chain like a request (the request
log gives the call its id, authentication and authorization run as for any call) and
is raised as the domain error InvalidArgument where the servicer would have run, so the
error mapper answers it like any other bad request.

Client-streaming requests are only parsed here, not searched for NUL. The one that
reaches the database is StreamEvents, whose events the domain checks one by one
(domain/events.py: ids and event types by their patterns, free text for NUL, data_json
by the JSON parser, which refuses raw control characters), so one bad event costs only
that event, a rejection in the answer; refusing its message here would fail the whole
stream, and a second walk over every event in Python would cost the ingest path.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from veritas_grpc.domain.errors import FieldViolation, InvalidArgument

log = logging.getLogger("veritas.requests")
NUL = "\x00"
NUL_PROBLEM = "must not contain NUL (U+0000) characters"


@dataclass(frozen=True)
class Refused:
    """Stands in for a request that must not reach its servicer."""

    error: InvalidArgument
    # Why the bytes did not parse, for the log (never for the caller).
    parse_error: str | None = None


def nul_paths(message: Message, prefix: str = "") -> Iterator[str]:
    """The path from the request of every string holding U+0000, nested and repeated
    ones included: `exam.title`, `recommendations[3]`, `event.detector.name`."""
    for holder in _string_holders(message.DESCRIPTOR):
        if holder.has_presence and not message.HasField(holder.name):
            continue  # unset: reading it would only build an empty message
        yield from holder.nul_paths(getattr(message, holder.name), prefix + holder.name)


class _Kind(enum.Enum):
    STRING = "string"
    MESSAGE = "message"
    MAP = "map"


@dataclass(frozen=True)
class _Holder:
    """A field of a message type that holds strings, itself or further down."""

    name: str
    kind: _Kind
    repeated: bool = False
    # A map's value field (string or message), for a MAP.
    value: _Holder | None = None

    @property
    def has_presence(self) -> bool:
        return self.kind is _Kind.MESSAGE and not self.repeated

    def nul_paths(self, value: Any, path: str) -> Iterator[str]:
        if self.kind is _Kind.MAP:
            assert self.value is not None
            for key, item in value.items():
                if isinstance(key, str) and NUL in key:
                    yield path
                yield from self.value.nul_paths(item, f"{path}[{key!r}]")
        elif self.kind is _Kind.STRING and self.repeated:
            # A path is spelled out only for a string found at fault.
            yield from (f"{path}[{i}]" for i, item in enumerate(value) if NUL in item)
        elif self.kind is _Kind.STRING:
            if NUL in value:
                yield path
        elif self.repeated:
            for index, item in enumerate(value):
                yield from nul_paths(item, f"{path}[{index}].")
        else:
            yield from nul_paths(value, f"{path}.")


@functools.cache
def _string_holders(descriptor: Descriptor) -> tuple[_Holder, ...]:
    """The fields worth looking into, worked out once per message type: a Timestamp or
    a list of numbers cannot hold a string, so the walk never enters them."""
    holders = []
    for field in descriptor.fields:
        holder = _holder(field)
        if holder is not None:
            holders.append(holder)
    return tuple(holders)


def _holder(field: FieldDescriptor) -> _Holder | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = (_holder(f) for f in field.message_type.fields)
        if key is None and value is None:
            return None
        return _Holder(field.name, _Kind.MAP, value=value or _Holder("value", _Kind.MESSAGE))
    if field.type == FieldDescriptor.TYPE_STRING:
        return _Holder(field.name, _Kind.STRING, field.is_repeated)
    if field.message_type is not None and _holds_strings(field.message_type):
        return _Holder(field.name, _Kind.MESSAGE, field.is_repeated)
    return None


@functools.cache
def _holds_strings(descriptor: Descriptor) -> bool:
    return _reaches_a_string(descriptor, frozenset())


def _reaches_a_string(descriptor: Descriptor, seen: frozenset[str]) -> bool:
    # A type met again on the way (Struct holds Values, which hold Structs) adds nothing.
    seen = seen | {descriptor.full_name}
    return any(
        field.type == FieldDescriptor.TYPE_STRING
        or (
            field.message_type is not None
            and field.message_type.full_name not in seen
            and _reaches_a_string(field.message_type, seen)
        )
        for field in descriptor.fields
    )


@dataclass(frozen=True)
class _Unwalked:
    """A parsed request whose bytes hold a zero byte, so a string may hold U+0000: it is
    walked inside the chain, once the caller is authorized, so that nobody without a
    token can make the server walk a 4 MiB message."""

    request: Message


def _nul_refusal(request: Message) -> Refused | None:
    paths = list(nul_paths(request))
    if not paths:
        return None
    return Refused(InvalidArgument([FieldViolation(path, NUL_PROBLEM) for path in paths]))


def _parse(deserialize: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return deserialize(data)
    except DecodeError as error:
        return Refused(InvalidArgument.unparseable(), parse_error=str(error))


def _unary_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        request = _parse(deserialize, data)
        # UTF-8 writes U+0000 as the byte 0, and nothing else as it: a request without
        # a zero byte (most are) needs no walk, and the scan runs at C speed.
        if isinstance(request, Message) and b"\x00" in data:
            return _Unwalked(request)
        return request

    return parse


def _checked(request: Any) -> Any:
    """The request to hand on, or the Refused standing in for it."""
    if isinstance(request, _Unwalked):
        return _nul_refusal(request.request) or request.request
    return request


def _stream_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        return _parse(deserialize, data)

    return parse


def _raise_refusal(refused: Refused) -> None:
    if refused.parse_error is not None:
        # Inside the call: the line carries its request id and method.
        log.warning("request could not be parsed", extra={"fields": {"error": refused.parse_error}})
    raise refused.error


async def _refused_call(refused: Refused) -> Any:
    _raise_refusal(refused)


async def _refused_stream(refused: Refused) -> AsyncIterator[Any]:
    _raise_refusal(refused)
    yield  # pragma: no cover - makes this an async generator, as a stream handler is


async def _checked_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Refused):
            _raise_refusal(request)
        yield request


# The wrappers hand on whatever the behaviour returns (a coroutine, an async generator,
# or a coroutine writing with context.write, as health's Watch does), so an accepted
# request costs one plain call more, and the chain around sees what it saw before.


def _unary_unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
    def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
        request = _checked(request)
        if isinstance(request, Refused):
            return _refused_call(request)
        return behavior(request, context)

    return checked


def _unary_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
        request = _checked(request)
        if isinstance(request, Refused):
            return _refused_stream(request)
        return behavior(request, context)

    return checked


def _stream_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        return behavior(_checked_requests(requests), context)

    return checked


def checked_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same method, with a deserializer that never raises and a behaviour that
    raises what the deserializer refused."""
    serialize = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _unary_unary(handler.unary_unary),
            _unary_deserializer(handler.request_deserializer),
            serialize,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _unary_stream(handler.unary_stream),
            _unary_deserializer(handler.request_deserializer),
            serialize,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _stream_request(handler.stream_unary),
            _stream_deserializer(handler.request_deserializer),
            serialize,
        )
    return grpc.stream_stream_rpc_method_handler(
        _stream_request(handler.stream_stream),
        _stream_deserializer(handler.request_deserializer),
        serialize,
    )


class RequestCheckInterceptor(grpc.aio.ServerInterceptor):
    """Innermost: its deserializer is the one grpc calls (grpc-interceptor's interceptors
    pass the inner handler's deserializer on), its checks run after authorization."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        # No handler: grpc answers UNIMPLEMENTED. No deserializer: the method takes raw
        # bytes, which always "parse".
        if handler is None or handler.request_deserializer is None:
            return handler
        return checked_handler(handler)
