"""The delivery loop of one agent: a coroutine on the shared sender loop (runtime.py).

Rules (README, "The agent library"):
- one StreamEvents stream per flush interval, or sooner once batch_events are waiting;
- a stream that got no answer is sent again unchanged (the same spooled bytes, so the
  same event ids and occur_times: the server stores each event once), after a backoff
  with full jitter; new events wait for the next stream;
- an event leaves the spool only once a stream carrying it was answered: accepted,
  duplicate, or rejected for good (reported to on_rejected, once). Events rejected as
  retryable stay and go out again on a later stream, after a backoff;
- UNAUTHENTICATED: one renewal of the session (Refresh, or Login) and one more try;
  refused again, the failure is reported to on_error, and the events wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from veritas.v1 import monitoring_pb2, resources_pb2

from veritas_grpc.agent.backoff import Backoff
from veritas_grpc.agent.batching import encode_messages
from veritas_grpc.agent.session import Session, SignInFailed
from veritas_grpc.agent.spool import Spool, SpooledEvent
from veritas_grpc.agent.transport import CallFailed, Transport

log = logging.getLogger("veritas.agent")
LATENCY_SAMPLES = 2048


class Outcome(enum.Enum):
    SETTLED = "settled"  # answered; every event of the stream left the spool
    RETRY_SOME = "retry_some"  # answered; some events were refused as retryable
    FAILED = "failed"  # no answer: the same stream goes again


@dataclass(frozen=True)
class Rejected:
    """An event the server refused for good: it is not stored and not sent again."""

    event: resources_pb2.MonitoringEvent
    field: str  # the field at fault, from the event (`data_json`); "" for the whole event
    reason: str


@dataclass(frozen=True)
class SenderSettings:
    flush_interval: float = 2.0
    batch_events: int = 500
    stream_timeout: float = 30.0


@dataclass
class Delivery:
    """What the sender did, for stats() (read without a lock: counters, roughly live)."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retryable_rejections: int = 0
    streams_answered: int = 0
    stream_failures: int = 0


class Sender:
    def __init__(
        self,
        spool: Spool,
        session: Session,
        transport: Transport,
        settings: SenderSettings,
        backoff: Backoff,
        on_rejected: Callable[[Rejected], object] | None = None,
        on_error: Callable[[Exception], object] | None = None,
    ) -> None:
        self._spool = spool
        self._session = session
        self._transport = transport
        self._settings = settings
        self._backoff = backoff
        self._on_rejected = on_rejected
        self._on_error = on_error
        self.delivery = Delivery()
        # Seconds from record() to the answer that settled the event, and per stream.
        self.event_latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.stream_latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._wake = asyncio.Event()
        self._closing = False
        self.signalled = False  # set by record() threads; cleared when a batch is taken
        self._batch: list[SpooledEvent] | None = None  # the stream being sent, until answered

    def wake(self) -> None:
        """On the loop's thread: events are waiting (or close() was called)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self._batch is None:
                if not await self._wait_for_events():
                    return
                self._batch = self._spool.oldest(self._settings.batch_events) or None
                self.signalled = False
                continue
            outcome = await self._send(self._batch)
            if outcome is not Outcome.FAILED:
                self._batch = None
            if outcome is Outcome.SETTLED:
                self._backoff.reset()
            else:  # no answer, or storage asked for a retry: wait before the next stream
                await asyncio.sleep(self._backoff.next_delay())

    def close(self) -> None:
        """On the loop's thread: send everything spooled, then end run()."""
        self._closing = True
        self._wake.set()

    async def _wait_for_events(self) -> bool:
        """False once closing with nothing left to send."""
        if self._closing:
            return self._spool.count > 0
        if self._spool.count < self._settings.batch_events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.flush_interval)
            self._wake.clear()
        return True

    async def _send(self, batch: list[SpooledEvent]) -> Outcome:
        messages = encode_messages([row.event for row in batch])
        started = time.monotonic()
        try:
            response = await self._stream_signed_in(messages)
        except (CallFailed, SignInFailed) as failure:
            self.delivery.stream_failures += 1
            if not (isinstance(failure, CallFailed) and failure.transient):
                self._report(failure)
            else:
                log.info("agent stream failed (%s); resending after a pause", failure)
            return Outcome.FAILED
        self.stream_latencies.append(time.monotonic() - started)
        return self._settle(batch, response)

    async def _stream_signed_in(self, messages: list[bytes]) -> monitoring_pb2.StreamEventsResponse:
        timeout = self._settings.stream_timeout
        token = await self._session.access_token()
        try:
            return await self._transport.stream_events(messages, token, timeout)
        except CallFailed as failure:
            if failure.code is not grpc.StatusCode.UNAUTHENTICATED:
                raise
        await self._session.renew()  # once: refused again, the caller reports it
        return await self._transport.stream_events(
            messages, await self._session.access_token(), timeout
        )

    def _settle(
        self, batch: list[SpooledEvent], response: monitoring_pb2.StreamEventsResponse
    ) -> Outcome:
        by_index = {rejection.index: rejection for rejection in response.rejections}
        answered: list[int] = []
        final: list[tuple[SpooledEvent, monitoring_pb2.Rejection]] = []
        retry = 0
        for index, row in enumerate(batch):
            rejection = by_index.get(index)
            if rejection is None:
                answered.append(row.seq)
            elif rejection.retryable:
                retry += 1
            else:
                answered.append(row.seq)
                final.append((row, rejection))
        self._spool.remove(answered)
        now = time.time()
        self.event_latencies.extend(now - row.recorded_at for row in batch)
        delivery = self.delivery
        delivery.streams_answered += 1
        delivery.accepted += response.accepted_count
        delivery.duplicates += response.duplicate_count
        delivery.rejected += len(final)
        delivery.retryable_rejections += retry
        for row, rejection in final:
            event = resources_pb2.MonitoringEvent.FromString(row.event)
            self._call(self._on_rejected, Rejected(event, rejection.field, rejection.reason))
        return Outcome.RETRY_SOME if retry else Outcome.SETTLED

    def _report(self, failure: Exception) -> None:
        log.warning("agent cannot deliver its events: %s", failure)
        self._call(self._on_error, failure)

    @staticmethod
    def _call(callback: Callable[..., object] | None, argument: object) -> None:
        if callback is None:
            return
        try:
            callback(argument)
        except Exception:  # a callback's bug must not stop delivery
            log.warning("an agent callback raised", exc_info=True)
