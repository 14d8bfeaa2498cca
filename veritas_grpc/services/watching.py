"""WatchExamAlerts, the use case: a teacher's live view of an exam's alerts.

The first item says the watch is live; then an alert whenever one arrives, and a
heartbeat whenever `heartbeat_seconds` pass without one. The viewer's access is checked
again every `heartbeat_seconds` however busy the exam is, so a revoked grant ends the
watch (NotFound) within that time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.identity import Principal
from veritas_grpc.services.monitoring import MonitoringService


class Subscription(Protocol):
    """One watcher's alerts: a bounded queue that drops (and counts) the oldest."""

    queue: asyncio.Queue[dict[str, Any]]
    dropped: int


class AlertSubscriptions(Protocol):
    """Where live alerts come from: adapters.alert_listener.AlertBroker, fed by
    LISTEN/NOTIFY from every server process."""

    def subscribe(self, exam_id: uuid.UUID) -> Subscription: ...

    def unsubscribe(self, watcher: Any) -> None: ...


@dataclass(frozen=True)
class WatchItem:
    """An alert (as the NOTIFY payload carries it), or None for a heartbeat; how many
    alerts this watcher has lost so far by reading too slowly; the server's time."""

    alert: dict[str, Any] | None
    dropped_count: int
    server_time: datetime


class AlertWatching:
    def __init__(
        self,
        monitoring: MonitoringService,
        subscriptions: AlertSubscriptions,
        runner: BlockingRunner,
        heartbeat_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._monitoring = monitoring
        self._subscriptions = subscriptions
        self._runner = runner
        self._heartbeat = heartbeat_seconds
        self._clock = clock

    async def watch(self, viewer: Principal, exam_id: str) -> AsyncIterator[WatchItem]:
        exam_uuid = await self._runner.run(self._monitoring.watch_target, viewer, exam_id)
        watcher = self._subscriptions.subscribe(exam_uuid)
        checked = time.monotonic()
        try:
            yield WatchItem(None, watcher.dropped, self._clock())
            while True:
                if time.monotonic() - checked >= self._heartbeat:
                    await self._runner.run(self._monitoring.watch_target, viewer, exam_id, False)
                    checked = time.monotonic()
                try:
                    alert = await asyncio.wait_for(watcher.queue.get(), self._heartbeat)
                except TimeoutError:
                    yield WatchItem(None, watcher.dropped, self._clock())
                    continue
                yield WatchItem(alert, watcher.dropped, self._clock())
        finally:
            self._subscriptions.unsubscribe(watcher)
