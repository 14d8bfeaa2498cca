"""The queue's calls with what every one of them needs: the bearer token, a deadline,
and retries with jittered backoff while the server is unavailable or busy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from veritas.v1 import analysis_pb2, analysis_pb2_grpc

from veritas_grpc.scorer.backoff import Backoff
from veritas_grpc.scorer.session import Session

log = logging.getLogger("veritas.scorer")
CALL_TIMEOUT_SECONDS = 30.0
# The whole evidence stream of one attempt (100,000 events read at a model's pace): a
# stalled stream ends, and the job fails and comes back, instead of being held forever
# by a lease that keeps being extended.
EVIDENCE_TIMEOUT_SECONDS = 900.0
# Transient: the server is restarting, overloaded, or a call took too long.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
Response = TypeVar("Response")


class GaveUp(Exception):
    """Still failing transiently when the caller's deadline came."""


@dataclass(frozen=True)
class Evidence:
    """The first message's evidence, and the events of every message, as they come."""

    evidence: analysis_pb2.AttemptEvidence
    events: AsyncIterator[analysis_pb2.EvidenceEvent]


class QueueApi:
    def __init__(self, channel: grpc.aio.Channel, session: Session) -> None:
        self.stub = analysis_pb2_grpc.AnalysisServiceStub(channel)
        self.session = session

    async def call(
        self,
        method: Callable[..., Awaitable[Response]],
        request: Any,
        *,
        timeout: float = CALL_TIMEOUT_SECONDS,
        retry_until: float | None = None,
    ) -> Response:
        """One unary call; transient failures are retried until `retry_until` (a
        time.monotonic() value; None: forever), then GaveUp."""
        backoff = Backoff()
        while True:
            metadata = await self.session.metadata()
            try:
                return await method(request, metadata=metadata, timeout=timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    await self.session.renew(_token_of(metadata))
                    if backoff.failures > 3:
                        raise
                elif error.code() not in RETRYABLE:
                    raise
                delay = backoff.next_delay()
                if retry_until is not None and time.monotonic() + delay > retry_until:
                    raise GaveUp(f"{error.code().name}: {error.details()}") from error
                log.warning(
                    "call failed, retrying",
                    extra={
                        "fields": {
                            "method": _name(method),
                            "status": error.code().name,
                            "retry_in": round(delay, 2),
                        }
                    },
                )
                await asyncio.sleep(delay)

    async def evidence(self, attempt_id: str, page_size: int) -> Evidence:
        """Open the attempt's evidence stream and read its first message."""
        metadata = await self.session.metadata()
        stream = self.stub.GetAttemptEvidence(
            analysis_pb2.GetAttemptEvidenceRequest(attempt_id=attempt_id, page_size=page_size),
            metadata=metadata,
            timeout=EVIDENCE_TIMEOUT_SECONDS,
        )
        first = await stream.read()
        if first is grpc.aio.EOF:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="the evidence stream ended before its first message",
            )
        return Evidence(first.evidence, _events(first, stream))


async def _events(
    first: analysis_pb2.GetAttemptEvidenceResponse,
    stream: Any,
) -> AsyncIterator[analysis_pb2.EvidenceEvent]:
    try:
        for item in first.events:
            yield item
        while (page := await stream.read()) is not grpc.aio.EOF:
            for item in page.events:
                yield item
    finally:
        # A consumer that stops early (a command that decided on less) ends the call.
        stream.cancel()


def _name(method: object) -> str:
    full = getattr(method, "_method", b"")  # the multicallable's /package.Service/Method
    return full.decode().rsplit("/", 1)[-1] if isinstance(full, bytes) else "?"


def _token_of(metadata: tuple[tuple[str, str], ...]) -> str | None:
    for key, value in metadata:
        if key == "authorization":
            return value.removeprefix("Bearer ")
    return None
