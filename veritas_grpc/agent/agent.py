"""Agent: what a monitoring agent calls. record() from any thread; delivery happens on
the shared sender loop (runtime.py) by the rules of sender.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from veritas.v1 import common_pb2, resources_pb2

from veritas_grpc.agent.backoff import Backoff
from veritas_grpc.agent.batching import MAX_EVENT_BYTES, MAX_STREAM_EVENTS
from veritas_grpc.agent.credentials import Credentials
from veritas_grpc.agent.events import build_event
from veritas_grpc.agent.runtime import Runtime, shared_runtime
from veritas_grpc.agent.sender import Rejected, Sender, SenderSettings
from veritas_grpc.agent.session import Session
from veritas_grpc.agent.spool import Spool
from veritas_grpc.agent.transport import GrpcTransport

log = logging.getLogger("veritas.agent")
DEFAULT_SPOOL_EVENTS = 100_000


@dataclass(frozen=True)
class AgentStats:
    recorded: int  # accepted by record() in this process
    dropped: int  # refused by record() (spool full, or the disk failed)
    pending: int  # in the spool: not yet answered (also from before a restart)
    accepted: int  # stored by the server, as its answers counted them
    duplicates: int  # stored before (resends)
    rejected: int  # refused for good, each reported once to on_rejected
    retryable_rejections: int  # refused for now, sent again later
    streams_answered: int
    stream_failures: int
    refreshes: int
    logins: int
    # Medians in seconds (None before any answer): record() to the answer, and a
    # stream's opening to its answer.
    median_delivery_seconds: float | None
    median_stream_seconds: float | None


class Agent:
    """A monitoring agent's client: record events, and they reach the server.

    Agent("127.0.0.1:50051", PasswordCredentials(email, password), attempt_id,
    spool_path="agent.spool") - see the README, "The agent library"."""

    def __init__(
        self,
        target: str,
        credentials: Credentials,
        attempt_id: str,
        *,
        spool_path: str | os.PathLike[str] | None = None,
        max_spool_events: int = DEFAULT_SPOOL_EVENTS,
        flush_interval: float = 2.0,
        batch_events: int = 500,
        channel_credentials: grpc.ChannelCredentials | None = None,
        refresh_margin: float | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        stream_timeout: float = 30.0,
        durable: bool = False,
        on_rejected: Callable[[Rejected], object] | None = None,
        on_dropped: Callable[[resources_pb2.MonitoringEvent], object] | None = None,
        on_error: Callable[[Exception], object] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        if not 1 <= batch_events <= MAX_STREAM_EVENTS:
            raise ValueError(f"batch_events must be 1 to {MAX_STREAM_EVENTS}")
        self.attempt_id = attempt_id
        self._on_dropped = on_dropped
        self._recorded = 0
        self._dropped = 0
        self._count_lock = threading.Lock()
        self._closed = False
        self._spool = Spool(
            spool_path or f"veritas-agent-{attempt_id}.spool", max_spool_events, durable
        )
        self._runtime = runtime or shared_runtime()
        # The channel's own reconnect backoff must not outlast ours (grpc's default
        # grows to 120 s, which would keep a restarted server waiting for us).
        self._channel_args = (
            target,
            channel_credentials,
            (
                ("grpc.max_reconnect_backoff_ms", int(backoff_cap * 1000)),
                ("grpc.initial_reconnect_backoff_ms", int(backoff_base * 1000)),
                ("grpc.min_reconnect_backoff_ms", int(backoff_base * 1000)),
            ),
        )
        transport = GrpcTransport(self._runtime.channel(*self._channel_args))
        self._session = Session(credentials, self._spool, transport, refresh_margin)
        self._batch_events = batch_events
        self._sender = self._runtime.submit(
            _make_sender(
                self._spool,
                self._session,
                transport,
                SenderSettings(flush_interval, batch_events, stream_timeout),
                Backoff(backoff_base, backoff_cap),
                on_rejected,
                on_error,
            )
        ).result()
        self._task = self._runtime.submit(_start(self._sender)).result()

    def record(
        self,
        event_type: str,
        severity: int | str = common_pb2.SEVERITY_UNSPECIFIED,
        *,
        category: int | str = common_pb2.EVENT_CATEGORY_UNSPECIFIED,
        is_anomaly: bool = False,
        data: Mapping[str, Any] | None = None,
        data_json: str | None = None,
        description: str = "",
        detector: resources_pb2.Detector | Mapping[str, Any] | None = None,
    ) -> str | None:
        """Spool one event (its event_id and occur_time are fixed now). Returns its
        event_id when accepted, and then it will reach the server, whatever happens to
        the network, the server or this process. None when the spool is full (or its
        disk fails): the event is dropped, counted in stats().dropped and passed to
        on_dropped.

        Never waits on the network and never raises for transport problems; raises
        ValueError for an event that cannot be encoded (an unknown severity name, data
        that is not JSON, over MAX_EVENT_BYTES), and RuntimeError after close()."""
        if self._closed:
            raise RuntimeError("the agent is closed")
        event_id = str(uuid.uuid4())
        event = build_event(
            self.attempt_id,
            event_id,
            time.time_ns(),
            event_type,
            severity=severity,
            category=category,
            is_anomaly=is_anomaly,
            data=data,
            data_json=data_json,
            description=description,
            detector=detector,
        )
        encoded = event.SerializeToString()
        if len(encoded) > MAX_EVENT_BYTES:
            raise ValueError(f"the event is {len(encoded)} bytes; at most {MAX_EVENT_BYTES}")
        try:
            stored = self._spool.add(encoded, time.time())
        except Exception:  # the disk is full or failing: a loss, made visible
            log.warning("the agent's spool cannot store an event", exc_info=True)
            stored = False
        if not stored:
            self._drop(event)
            return None
        with self._count_lock:
            self._recorded += 1
        sender = self._sender
        if not sender.signalled and self._spool.count >= self._batch_events:
            sender.signalled = True
            self._runtime.call_soon(sender.wake)
        return event_id

    def _drop(self, event: resources_pb2.MonitoringEvent) -> None:
        with self._count_lock:
            self._dropped += 1
        if self._on_dropped is not None:
            try:
                self._on_dropped(event)
            except Exception:
                log.warning("on_dropped raised", exc_info=True)

    def stats(self) -> AgentStats:
        delivery = self._sender.delivery
        events, streams = list(self._sender.event_latencies), list(self._sender.stream_latencies)
        return AgentStats(
            recorded=self._recorded,
            dropped=self._dropped,
            pending=self._spool.count,
            accepted=delivery.accepted,
            duplicates=delivery.duplicates,
            rejected=delivery.rejected,
            retryable_rejections=delivery.retryable_rejections,
            streams_answered=delivery.streams_answered,
            stream_failures=delivery.stream_failures,
            refreshes=self._session.refreshes,
            logins=self._session.logins,
            median_delivery_seconds=statistics.median(events) if events else None,
            median_stream_seconds=statistics.median(streams) if streams else None,
        )

    def latency_samples(self) -> tuple[list[float], list[float]]:
        """The latest (record-to-answer, stream) latencies in seconds, for benchmarks."""
        return list(self._sender.event_latencies), list(self._sender.stream_latencies)

    def close(self, timeout: float = 10.0) -> int:
        """Send what is spooled for up to `timeout` seconds, then stop. Returns the
        events left in the spool (sent by the next Agent on the same spool)."""
        if self._closed:
            return self._spool.count
        self._closed = True
        self._runtime.call_soon(self._sender.close)
        try:
            self._runtime.submit(_finish(self._task, timeout)).result()
        except Exception:
            log.warning("the agent's sender failed", exc_info=True)
        left = self._spool.count
        self._runtime.release(*self._channel_args)
        self._spool.close()
        return left

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _start(sender: Sender) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(sender.run())


async def _finish(task: asyncio.Task[None], timeout: float) -> None:
    """Wait for the sender to empty the spool; at the deadline, cancel it and wait until
    it has stopped (the stream in flight goes unanswered: its events stay spooled)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, timeout)


async def _make_sender(*args: Any) -> Sender:
    # On the loop's thread: the sender's asyncio.Event belongs to that loop.
    return Sender(*args)
