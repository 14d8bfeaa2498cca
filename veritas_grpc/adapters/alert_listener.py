"""Live alerts across server processes: every process LISTENs on one PostgreSQL channel
(ingestion NOTIFYs on it at commit) and fans alerts out to its own watchers.

NOTIFY is not durable, the alert log is (db.models.alerts): every alert carries its
exam's sequence number, 1, 2, 3, ... in commit order without gaps. A watcher delivers
the alert that follows the last one it delivered; a repeat (at or below it) is skipped;
a gap (a later number first) means alerts it missed, read from the store and delivered
in order before the newer ones. Each time the LISTEN connection is (re)established,
every watcher checks the store for what was committed while nobody listened. A watcher
that reads slowly never holds up the listener: past its bounded queue it stops taking
live alerts and refills from the store, a page at a time. Only alerts the store no
longer has (removed by retention) are lost, and counted in `dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from veritas_grpc.adapters.alert_store import Alert, AlertStore
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.db.models import ALERT_CHANNEL
from veritas_grpc.domain.errors import Unavailable

log = logging.getLogger("veritas.alerts")
# Live alerts a watcher holds at most; past that it refills from the store.
WATCHER_QUEUE = 1000
# Alerts read from the store per query when a watcher catches up.
CATCH_UP_PAGE = 200
# How long a watcher waits before reading the store again after it was unavailable.
STORE_RETRY_SECONDS = 0.5
# Reconnect delays of the LISTEN connection: from the first, doubled up to the cap, and
# back to the first once a connection was established again.
FIRST_RECONNECT_SECONDS = 0.2
MAX_RECONNECT_SECONDS = 2.0

# Reads a page of the exam's stored alerts after a sequence (AlertStore.page).
Fetch = Callable[[uuid.UUID, int, int], Awaitable[list[tuple[int, Alert | None]]]]


class Watcher:
    """One watch of one exam: the alerts after `last_sequence`, each once, in order.
    Lives on the event loop (offer and mark_stale are called there)."""

    def __init__(
        self,
        exam_id: uuid.UUID,
        last_sequence: int,
        fetch: Fetch,
        queue_limit: int = WATCHER_QUEUE,
        page: int = CATCH_UP_PAGE,
    ) -> None:
        self.exam_id = exam_id
        # The last alert delivered (or skipped as before the watch, or as lost).
        self.last_sequence = last_sequence
        # The exam's last alert when the watch began.
        self.latest_sequence = last_sequence
        self.dropped = 0
        self._fetch = fetch
        self._queue_limit = queue_limit
        self._page = page
        self._live: deque[Alert] = deque()
        # Read from the store, contiguous: (sequence, alert or None when lost, lost count).
        self._fetched: deque[tuple[int, Alert | None, int]] = deque()
        self._stale = False
        self._retry_at = 0.0
        self._wake = asyncio.Event()

    def offer(self, alert: Alert) -> None:
        """A live alert, as NOTIFYed."""
        if alert["sequence"] <= self.last_sequence:
            return
        if len(self._live) >= self._queue_limit:
            self._stale = True  # it stays in the store: read from there later
        else:
            self._live.append(alert)
        self._wake.set()

    def mark_stale(self) -> None:
        """Alerts may have been committed unseen (no LISTEN connection): check the store."""
        self._stale = True
        self._wake.set()

    async def next(self, timeout: float) -> Alert | None:
        """The next alert, or None when `timeout` seconds pass without one. A store that
        cannot be reached is read again every STORE_RETRY_SECONDS meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            self._wake.clear()
            alert = self._take()
            if alert is not None:
                return alert
            now = time.monotonic()
            needs_store = self._stale or bool(self._live)
            if needs_store and now >= self._retry_at:
                try:
                    await self._catch_up()
                except Unavailable:
                    self._stale = True
                    self._retry_at = time.monotonic() + STORE_RETRY_SECONDS
                continue
            remaining = deadline - now
            if remaining <= 0:
                return None
            if needs_store:
                remaining = min(remaining, max(self._retry_at - now, 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _take(self) -> Alert | None:
        while self._fetched:
            sequence, alert, lost = self._fetched.popleft()
            self.dropped += lost
            self.last_sequence = sequence
            if alert is not None:
                return alert
        live = self._live
        while live and live[0]["sequence"] <= self.last_sequence:
            live.popleft()  # a repeat: delivered already (from the store)
        if live and live[0]["sequence"] == self.last_sequence + 1:
            alert = live.popleft()
            self.last_sequence = alert["sequence"]
            return alert
        return None

    async def _catch_up(self) -> None:
        """Read the next page after last_sequence from the store. A live alert queued
        before the read began was committed before it: every number below it is in
        the store, or was removed (lost)."""
        horizon = self._live[0]["sequence"] if self._live else None
        self._stale = False
        try:
            rows = await self._fetch(self.exam_id, self.last_sequence, self._page)
        except BaseException:
            self._stale = True
            raise
        expected = self.last_sequence + 1
        for sequence, alert in rows:
            lost = sequence - expected + (alert is None)
            self._fetched.append((sequence, alert, lost))
            expected = sequence + 1
        if len(rows) >= self._page:
            self._stale = True  # more after this page
        elif horizon is not None and expected < horizon:
            self._fetched.append((horizon - 1, None, horizon - expected))


class AlertBroker:
    """Watchers by exam, on the event loop."""

    def __init__(self, store: AlertStore, runner: BlockingRunner) -> None:
        self._store = store
        self._runner = runner
        self._watchers: dict[uuid.UUID, set[Watcher]] = {}

    async def subscribe(self, exam_id: uuid.UUID, after_sequence: int | None) -> Watcher:
        """A watcher of the exam's alerts after `after_sequence` (None: after the exam's
        last one now). Raises Unavailable when the store cannot be read."""
        watcher = Watcher(exam_id, 0, self._fetch)
        # Registered first: what is NOTIFYed while the last sequence is read is kept.
        self._watchers.setdefault(exam_id, set()).add(watcher)
        try:
            latest = await self._runner.run(self._store.last_sequence, exam_id)
        except BaseException:
            self.unsubscribe(watcher)
            raise
        watcher.latest_sequence = latest
        if after_sequence is None:
            watcher.last_sequence = latest
        else:
            watcher.last_sequence = min(after_sequence, latest)
            watcher.mark_stale()
        return watcher

    def unsubscribe(self, watcher: Any) -> None:
        watchers = self._watchers.get(watcher.exam_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[watcher.exam_id]

    async def _fetch(
        self, exam_id: uuid.UUID, after: int, limit: int
    ) -> list[tuple[int, Alert | None]]:
        return await self._runner.run(self._store.page, exam_id, after, limit)

    def publish(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            exam_id = uuid.UUID(message["exam_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed alert notification")
            return
        watchers = list(self._watchers.get(exam_id, ()))
        if not watchers:
            return
        first = message.get("first_sequence")
        alerts = message.get("alerts")
        if not isinstance(first, int) or not isinstance(alerts, list):
            # Not numbered (or not understood): the store has them.
            for watcher in watchers:
                watcher.mark_stale()
            return
        for offset, alert in enumerate(alerts):
            alert["sequence"] = first + offset
            for watcher in watchers:
                watcher.offer(alert)

    def reconnected(self) -> None:
        """The LISTEN connection is (re)established: whatever was committed while it was
        down was not NOTIFYed to us. Every watcher checks the store."""
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.mark_stale()


class Backoff:
    """Delays between reconnects: doubling up to a cap, reset by a success."""

    def __init__(
        self, first: float = FIRST_RECONNECT_SECONDS, cap: float = MAX_RECONNECT_SECONDS
    ) -> None:
        self._first = first
        self._cap = cap
        self._next = first

    def delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._first


# A LISTEN connection only ever receives, so a connection that died without a reset
# (a NAT or firewall forgetting it, a host gone) would look idle for ever, and every
# alert after it would be lost without a sign. TCP keepalives and a bound on unacked
# data (tcp_user_timeout, ms) make the kernel notice; a query on a quiet connection
# every LISTEN_PROBE_SECONDS makes the listener notice, then reconnect and catch up.
LISTEN_CONNECT_ARGS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}
LISTEN_PROBE_SECONDS = 10.0


def _probe(connection: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


class ChannelHandler(Protocol):
    """What hears one channel, on the event loop."""

    def publish(self, payload: str) -> None: ...
    def reconnected(self) -> None: ...


class AlertListener:
    """A thread holding one LISTEN connection, handing notifications to the broker, and
    those of other channels (`others`: the session notices) to their handlers: one
    connection per process, whatever it listens to."""

    def __init__(
        self,
        database_url: str,
        broker: AlertBroker,
        others: Mapping[str, ChannelHandler] | None = None,
    ) -> None:
        self._engine = create_engine(
            database_url, poolclass=NullPool, connect_args=LISTEN_CONNECT_ARGS
        )
        self._broker = broker
        self._others = dict(others or {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backoff = Backoff()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="veritas-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._engine.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as error:  # noqa: BLE001 - reconnect and carry on
                log.warning("alert listener lost its connection: %s", type(error).__name__)
                self._stop.wait(self._backoff.delay())

    def _connected(self) -> None:
        """LISTEN is in place: from here on every commit's NOTIFY reaches us. What was
        committed before is in the store, so the watchers read it now."""
        self._backoff.reset()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._broker.reconnected)
        for handler in self._others.values():
            self._loop.call_soon_threadsafe(handler.reconnected)

    def _listen(self) -> None:
        raw = self._engine.raw_connection()
        try:
            connection = raw.dbapi_connection
            connection.autocommit = True  # type: ignore[union-attr]
            with connection.cursor() as cursor:  # type: ignore[union-attr]
                for channel in (ALERT_CHANNEL, *self._others):
                    cursor.execute(f"LISTEN {channel}")
            self._connected()
            quiet_since = time.monotonic()
            while not self._stop.is_set():
                readable, _, _ = select.select([connection], [], [], 1.0)
                if readable:
                    connection.poll()  # type: ignore[union-attr]
                elif time.monotonic() - quiet_since >= LISTEN_PROBE_SECONDS:
                    _probe(connection)  # notifications it meets wait in .notifies
                else:
                    continue
                quiet_since = time.monotonic()
                while connection.notifies:  # type: ignore[union-attr]
                    notification = connection.notifies.pop(0)  # type: ignore[union-attr]
                    assert self._loop is not None
                    handler = self._others.get(notification.channel, self._broker)
                    self._loop.call_soon_threadsafe(handler.publish, notification.payload)
        except BaseException:
            raw.invalidate()  # dead: closed without a rollback the pool would log as an error
            raise
        finally:
            raw.close()
