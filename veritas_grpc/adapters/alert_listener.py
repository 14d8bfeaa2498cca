"""Live alerts across server processes: every process LISTENs on one PostgreSQL channel
(ingestion NOTIFYs on it at commit) and fans alerts out to its own watchers.

A watcher has a bounded queue: when it reads too slowly, its oldest alerts are dropped
and counted, so a slow watcher never holds up the listener, let alone ingestion.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from veritas_grpc.db.models import ALERT_CHANNEL

log = logging.getLogger("veritas.alerts")
WATCHER_QUEUE = 1000


@dataclass(eq=False)  # identity: each watcher is its own subscription
class Watcher:
    exam_id: uuid.UUID
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=WATCHER_QUEUE)
    )
    dropped: int = 0

    def offer(self, alert: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(alert)


class AlertBroker:
    """Watchers by exam, on the event loop."""

    def __init__(self) -> None:
        self._watchers: dict[uuid.UUID, set[Watcher]] = {}

    def subscribe(self, exam_id: uuid.UUID) -> Watcher:
        watcher = Watcher(exam_id)
        self._watchers.setdefault(exam_id, set()).add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.exam_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[watcher.exam_id]

    def publish(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            exam_id = uuid.UUID(message["exam_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed alert notification")
            return
        for watcher in list(self._watchers.get(exam_id, ())):
            for alert in message.get("alerts", []):
                watcher.offer(alert)


class AlertListener:
    """A thread holding one LISTEN connection, handing notifications to the broker."""

    def __init__(self, database_url: str, broker: AlertBroker) -> None:
        self._engine = create_engine(database_url, poolclass=NullPool)
        self._broker = broker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.5
            except Exception as error:  # noqa: BLE001 - reconnect and carry on
                log.warning("alert listener lost its connection: %s", type(error).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _listen(self) -> None:
        raw = self._engine.raw_connection()
        try:
            connection = raw.dbapi_connection
            connection.autocommit = True  # type: ignore[union-attr]
            with connection.cursor() as cursor:  # type: ignore[union-attr]
                cursor.execute(f"LISTEN {ALERT_CHANNEL}")
            while not self._stop.is_set():
                readable, _, _ = select.select([connection], [], [], 1.0)
                if not readable:
                    continue
                connection.poll()  # type: ignore[union-attr]
                while connection.notifies:  # type: ignore[union-attr]
                    notification = connection.notifies.pop(0)  # type: ignore[union-attr]
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(self._broker.publish, notification.payload)
        finally:
            raw.close()
