"""WatchExamAlerts, the use case: a teacher's live view of an exam's alerts.

The first item says the watch is live; then every alert after the resume point (or,
without one, after the exam's last alert when the watch began), each once, in
sequence order, and a heartbeat whenever `heartbeat_seconds` pass without one. The
viewer's access is checked again every `heartbeat_seconds` however busy the exam is,
so a revoked grant ends the watch (NotFound) within that time, and the store is read
for any alert that did not arrive live. While the database is
unavailable the watch waits: heartbeats go on, no alert is delivered before access
was checked again, and the subscription catches up from the store once it is back.
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
from veritas_grpc.domain.errors import InvalidArgument, Unavailable
from veritas_grpc.domain.identity import Principal
from veritas_grpc.services.monitoring import MonitoringService

# How often access is checked again while the database is unavailable.
ACCESS_RETRY_SECONDS = 1.0


class Subscription(Protocol):
    """One watcher's alerts, each once, in sequence order."""

    # The last alert delivered, or the one the watch started after.
    last_sequence: int
    # The exam's last alert when the watch began.
    latest_sequence: int
    # Alerts that could not be delivered (no longer stored).
    dropped: int

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next alert, or None after `timeout` seconds without one."""
        ...

    def mark_stale(self) -> None:
        """Look in the store for alerts that did not arrive live."""
        ...


class AlertSubscriptions(Protocol):
    """Where alerts come from: adapters.alert_listener.AlertBroker, fed by LISTEN/NOTIFY
    from every server process and by the stored alert log."""

    async def subscribe(self, exam_id: uuid.UUID, after_sequence: int | None) -> Subscription:
        """Raises Unavailable when the database cannot be reached."""
        ...

    def unsubscribe(self, watcher: Any) -> None: ...


@dataclass(frozen=True)
class WatchItem:
    """An alert (as the NOTIFY payload carries it, with its "sequence"), or None for a
    heartbeat; how many alerts this watch could not deliver so far; the server's time;
    the watch's position (the last sequence delivered or started after)."""

    alert: dict[str, Any] | None
    dropped_count: int
    server_time: datetime
    last_sequence: int = 0


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

    async def watch(
        self, viewer: Principal, exam_id: str, after_sequence: int | None = None
    ) -> AsyncIterator[WatchItem]:
        if after_sequence is not None and after_sequence < 0:
            raise InvalidArgument.of("after_sequence", "must be 0 or more")
        exam_uuid = await self._runner.run(self._monitoring.watch_target, viewer, exam_id)
        watcher = await self._subscriptions.subscribe(exam_uuid, after_sequence)
        try:
            if after_sequence is not None and after_sequence > watcher.latest_sequence:
                raise InvalidArgument.of(
                    "after_sequence",
                    f"beyond the exam's last alert ({watcher.latest_sequence})",
                )
            async for item in self._follow(viewer, exam_id, watcher):
                yield item
        finally:
            self._subscriptions.unsubscribe(watcher)

    async def _follow(
        self, viewer: Principal, exam_id: str, watcher: Subscription
    ) -> AsyncIterator[WatchItem]:
        heartbeat = self._heartbeat
        checked = sent = time.monotonic()
        access_unknown = False
        yield self._item(None, watcher)
        while True:
            now = time.monotonic()
            if access_unknown or now - checked >= heartbeat:
                try:
                    await self._runner.run(self._monitoring.watch_target, viewer, exam_id, False)
                    checked, access_unknown = time.monotonic(), False
                    # A backstop, one indexed read per heartbeat: an alert whose NOTIFY
                    # never came (a dead LISTEN connection not noticed yet) is read
                    # from the store instead of being lost without a sign.
                    watcher.mark_stale()
                except Unavailable:
                    access_unknown = True  # check again soon; deliver nothing meanwhile
            until_heartbeat = heartbeat - (time.monotonic() - sent)
            if access_unknown:
                await asyncio.sleep(max(0.0, min(ACCESS_RETRY_SECONDS, until_heartbeat)))
                alert = None
            elif until_heartbeat > 0:
                alert = await watcher.next(until_heartbeat)
            else:
                alert = None
            if alert is None and time.monotonic() - sent < heartbeat:
                continue
            yield self._item(alert, watcher)
            sent = time.monotonic()

    def _item(self, alert: dict[str, Any] | None, watcher: Subscription) -> WatchItem:
        return WatchItem(alert, watcher.dropped, self._clock(), watcher.last_sequence)
