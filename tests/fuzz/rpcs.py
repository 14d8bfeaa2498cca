"""Every RPC the server serves, found from the descriptors, and one generic way to call
each: the channel sends the fuzzed bytes as they are and keeps the answer as bytes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool, text_format
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from veritas_grpc.reflection import V1_SERVICE_NAME, register_v1_descriptor
from veritas_grpc.security import policy

# A generous deadline: every call must end (or, for a server stream, send its first
# message) well within it.
DEADLINE_SECONDS = 10.0


@dataclass(frozen=True)
class Rpc:
    path: str
    input_type: Descriptor
    client_streaming: bool
    server_streaming: bool

    @classmethod
    def of(cls, method: MethodDescriptor) -> Rpc:
        return cls(
            policy.method_path(method),
            method.input_type,
            method.client_streaming,
            method.server_streaming,
        )

    def __str__(self) -> str:
        return self.path


def _reflection_v1() -> ServiceDescriptor:
    pool = descriptor_pool.DescriptorPool()
    register_v1_descriptor(pool)
    return pool.FindServiceByName(V1_SERVICE_NAME)


def served_services() -> list[ServiceDescriptor]:
    """veritas.v1 (every generated module), grpc.health.v1 and both reflections."""
    return [
        *policy.veritas_services(),
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
        _reflection_v1(),
    ]


def all_rpcs() -> list[Rpc]:
    return [Rpc.of(method) for service in served_services() for method in service.methods]


@dataclass(frozen=True)
class Answer:
    code: grpc.StatusCode
    message: str
    # The google.rpc.Status details (field violations and the like) as text.
    details: str
    metadata: dict[str, str]
    seconds: float
    # A server stream that sent its first message, which the caller then cancelled.
    stream_began: bool = False

    def text(self) -> str:
        return f"{self.message}\n{self.details}"


def _details(metadata: dict[str, str | bytes]) -> str:
    raw = metadata.get("grpc-status-details-bin")
    if not isinstance(raw, bytes):
        return ""
    status = status_pb2.Status.FromString(raw)
    return text_format.MessageToString(status, descriptor_pool=descriptor_pool.Default())


def _metadata(call, *, trailers: bool = True) -> dict[str, str | bytes]:
    pairs = [*(call.initial_metadata() or ())]
    if trailers:
        pairs += call.trailing_metadata() or ()
    return dict(pairs)


def _ended(call, started: float) -> Answer:
    metadata = _metadata(call)
    return Answer(
        call.code(),
        call.details() or "",
        _details(metadata),
        {k: v for k, v in metadata.items() if isinstance(v, str)},
        time.monotonic() - started,
    )


def _began(stream, started: float) -> Answer:
    """A stream that has begun: its headers have arrived, its trailers never will."""
    metadata = _metadata(stream, trailers=False)
    strings = {k: v for k, v in metadata.items() if isinstance(v, str)}
    return Answer(grpc.StatusCode.OK, "", "", strings, time.monotonic() - started, True)


def call(channel: grpc.Channel, rpc: Rpc, requests: Sequence[bytes], metadata) -> Answer:
    """One call: the first request for a unary one, all of them for a client stream.
    A server stream is read to its first message (its headers then carry the request
    id) and cancelled: WatchExamAlerts and Health/Watch stay open by design."""
    started = time.monotonic()
    argument = iter(requests) if rpc.client_streaming else requests[0]
    options = {"metadata": metadata, "timeout": DEADLINE_SECONDS}
    if rpc.server_streaming:
        factory = channel.stream_stream if rpc.client_streaming else channel.unary_stream
        stream = factory(rpc.path)(argument, **options)
        try:
            next(stream)
        except (StopIteration, grpc.RpcError):
            return _ended(stream, started)
        began = _began(stream, started)
        stream.cancel()
        return began
    factory = channel.stream_unary if rpc.client_streaming else channel.unary_unary
    try:
        _, done = factory(rpc.path).with_call(argument, **options)
    except grpc.RpcError as error:
        done = error
    return _ended(done, started)
