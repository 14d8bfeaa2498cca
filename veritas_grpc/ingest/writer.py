"""Coalesces events from many streams into large transactions.

Streams submit validated batches and await their outcome; a few writer tasks take
whatever is queued (up to max_rows), store it in one transaction on the database pool,
and tell each submission which of its events were stored now and which were already
there. An agent is answered only after its own events are committed, while commits
carry hundreds or thousands of rows (rows per commit matter ~5x). The queue is bounded:
when the database falls behind, streams wait instead of the server buffering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.events import EventRow
from veritas_grpc.repositories.events import AlertTarget, EventKey

log = logging.getLogger("veritas.ingest")
Store = Callable[[Sequence[EventRow], dict[str, AlertTarget]], set[EventKey]]
# A lone small submission waits this long for company before it is written.
LINGER_SECONDS = 0.002


class StorageFailed(Exception):
    """The batch could not be committed; none of its events is stored."""


@dataclass
class _Submission:
    rows: Sequence[EventRow]
    targets: dict[str, AlertTarget]
    done: asyncio.Future[list[bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class EventWriter:
    def __init__(
        self,
        store: Store,
        runner: BlockingRunner,
        writers: int = 2,
        max_rows: int = 5000,
        queue_limit: int = 64,
    ) -> None:
        self._store = store
        self._runner = runner
        self._writers = writers
        self._max_rows = max_rows
        self._queue: asyncio.Queue[_Submission] = asyncio.Queue(maxsize=queue_limit)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"event-writer-{n}")
            for n in range(self._writers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def submit(self, rows: Sequence[EventRow], targets: dict[str, AlertTarget]) -> list[bool]:
        """Store rows; for each, True if stored now, False if it was there already.
        Raises StorageFailed when the batch could not be committed."""
        submission = _Submission(rows, targets)
        await self._queue.put(submission)
        return await submission.done

    async def _take_batch(self) -> list[_Submission]:
        batch = [await self._queue.get()]
        size = len(batch[0].rows)
        if self._queue.empty() and size < self._max_rows // 10:
            await asyncio.sleep(LINGER_SECONDS)
        while size < self._max_rows and not self._queue.empty():
            submission = self._queue.get_nowait()
            batch.append(submission)
            size += len(submission.rows)
        return batch

    async def _work(self) -> None:
        while True:
            batch = await self._take_batch()
            if not await self._write(batch) and len(batch) > 1:
                # Whatever failed the shared transaction must not fail the other streams'
                # events: each submission gets a transaction of its own.
                for submission in batch:
                    await self._write([submission])

    async def _write(self, batch: list[_Submission]) -> bool:
        rows = [row for submission in batch for row in submission.rows]
        targets: dict[str, AlertTarget] = {}
        for submission in batch:
            targets.update(submission.targets)
        try:
            stored = await self._runner.run(self._store, rows, targets)
        except Exception as error:  # noqa: BLE001 - reported to the waiting streams
            log.warning("storing %d events failed: %s", len(rows), type(error).__name__)
            if len(batch) == 1 and not batch[0].done.done():
                batch[0].done.set_exception(StorageFailed())
            return False
        self._resolve(batch, stored)
        return True

    @staticmethod
    def _resolve(batch: list[_Submission], stored: set[EventKey]) -> None:
        """Tell each submission which of its events were stored now."""
        claimed: set[EventKey] = set()
        for submission in batch:
            outcome = []
            for row in submission.rows:
                new = row.key in stored and row.key not in claimed
                claimed.add(row.key)
                outcome.append(new)
            if not submission.done.done():
                submission.done.set_result(outcome)
