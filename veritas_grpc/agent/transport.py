"""The three calls an agent makes, over a grpc.aio channel, with failures as CallFailed.

The sender (sender.py) sees only this interface, so its rules are unit-tested with a
fake transport and no server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc
from veritas.v1 import auth_pb2, auth_pb2_grpc, monitoring_pb2

_STREAM_EVENTS = "/veritas.v1.MonitoringService/StreamEvents"

# Worth another try later, unchanged: the server or the network is down or busy.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        # A stream cut by the channel itself (e.g. the connection reset mid-call).
        grpc.StatusCode.CANCELLED,
    }
)


class CallFailed(Exception):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT


@dataclass(frozen=True)
class Pair:
    access: str
    refresh: str


class Transport(Protocol):
    async def stream_events(
        self, messages: list[bytes], access_token: str, timeout: float
    ) -> monitoring_pb2.StreamEventsResponse: ...

    async def refresh(self, refresh_token: str, timeout: float) -> Pair: ...

    async def login(self, email: str, password: str, timeout: float) -> Pair: ...


def _identity(message: bytes) -> bytes:
    return message


class GrpcTransport:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        # Requests go out as the spool's bytes (batching.py), never re-serialized.
        self._stream = channel.stream_unary(
            _STREAM_EVENTS,
            request_serializer=_identity,
            response_deserializer=monitoring_pb2.StreamEventsResponse.FromString,
        )
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)

    async def stream_events(
        self, messages: list[bytes], access_token: str, timeout: float
    ) -> monitoring_pb2.StreamEventsResponse:
        metadata = (("authorization", f"Bearer {access_token}"),)
        try:
            return await self._stream(iter(messages), metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise CallFailed(error.code(), error.details() or "") from None

    async def refresh(self, refresh_token: str, timeout: float) -> Pair:
        request = auth_pb2.RefreshRequest(refresh_token=refresh_token)
        try:
            answer = await self._auth.Refresh(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise CallFailed(error.code(), error.details() or "") from None
        return Pair(answer.tokens.access_token, answer.tokens.refresh_token)

    async def login(self, email: str, password: str, timeout: float) -> Pair:
        request = auth_pb2.LoginRequest(email=email, password=password)
        try:
            answer = await self._auth.Login(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise CallFailed(error.code(), error.details() or "") from None
        return Pair(answer.tokens.access_token, answer.tokens.refresh_token)
