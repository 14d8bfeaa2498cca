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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from veritas_grpc.adapters.metrics import Metrics
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.event_store import Outcome, StorageFailed, ValuesRefused
from veritas_grpc.domain.events import AlertTarget, EventKey, EventRow

log = logging.getLogger("veritas.ingest")
# Stores a batch in one transaction; the keys stored now (MonitoringService.store).
Store = Callable[[Sequence[EventRow], dict[str, AlertTarget]], set[EventKey]]
# A lone small submission waits this long for company before it is written.
LINGER_SECONDS = 0.002
# Transactions one submission may take to single out the events the database refuses
# (each refused event among n costs up to 2 x log2(n): a few per thousand use it up).
MAX_ISOLATION_TRANSACTIONS = 64


@dataclass
class _Submission:
    rows: Sequence[EventRow]
    targets: dict[str, AlertTarget]
    done: asyncio.Future[list[Outcome]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class EventWriter:
    """The event sink of the ingestion use case (services.ingestion.EventSink)."""

    def __init__(
        self,
        store: Store,
        runner: BlockingRunner,
        writers: int = 2,
        max_rows: int = 5000,
        queue_limit: int = 64,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._writers = writers
        self._max_rows = max_rows
        self._queue: asyncio.Queue[_Submission] = asyncio.Queue(maxsize=queue_limit)
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics = metrics
        if metrics is not None:
            metrics.writer_capacity.set(queue_limit)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"event-writer-{n}")
            for n in range(self._writers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def submit(
        self, rows: Sequence[EventRow], targets: dict[str, AlertTarget]
    ) -> list[Outcome]:
        """Store rows; the outcome of each. Raises StorageFailed when the rows could not
        be committed."""
        submission = _Submission(rows, targets)
        await self._queue.put(submission)
        self._depth_changed()
        return await submission.done

    def _depth_changed(self) -> None:
        if self._metrics is not None:
            self._metrics.writer_queue.set(self._queue.qsize())

    async def _run_store(
        self, rows: Sequence[EventRow], targets: dict[str, AlertTarget]
    ) -> set[EventKey]:
        """One transaction; its size and time are measured when it commits."""
        started = time.perf_counter()
        stored = await self._runner.run(self._store, rows, targets)
        if self._metrics is not None:
            self._metrics.commit_seconds.observe(time.perf_counter() - started)
            self._metrics.batch_rows.observe(len(rows))
        return stored

    async def _take_batch(self) -> list[_Submission]:
        batch = [await self._queue.get()]
        size = len(batch[0].rows)
        if self._queue.empty() and size < self._max_rows // 10:
            await asyncio.sleep(LINGER_SECONDS)
        while size < self._max_rows and not self._queue.empty():
            submission = self._queue.get_nowait()
            batch.append(submission)
            size += len(submission.rows)
        self._depth_changed()
        return batch

    async def _work(self) -> None:
        while True:
            batch = await self._take_batch()
            error = await self._store_together(batch)
            if error is None:
                continue
            if len(batch) == 1:
                if isinstance(error, ValuesRefused):
                    await self._store_alone(batch[0], known_refused=True)
                else:
                    _fail(batch[0])
                continue
            # Whatever failed the shared transaction must not fail the other streams'
            # events: each submission is stored on its own.
            for submission in batch:
                await self._store_alone(submission)

    async def _store_together(self, batch: list[_Submission]) -> Exception | None:
        rows = [row for submission in batch for row in submission.rows]
        targets: dict[str, AlertTarget] = {}
        for submission in batch:
            targets.update(submission.targets)
        try:
            stored = await self._run_store(rows, targets)
        except Exception as error:  # noqa: BLE001 - reported to the waiting streams
            log.warning("storing %d events failed: %s", len(rows), type(error).__name__)
            return error
        self._resolve(batch, stored)
        return None

    async def _store_alone(self, submission: _Submission, known_refused: bool = False) -> None:
        """One stream's events in transactions of their own. Where the database refuses
        a value (our checks missed something), the events are stored half by half until
        each refused one stands alone: only those are refused, the rest are stored. The
        halving has a budget of transactions, so that a message full of such values
        cannot hold a writer for long; events it could not try are left UNTRIED."""
        stored: set[EventKey] = set()
        refused: set[EventKey] = set()
        rows = list(submission.rows)
        parts = [rows]
        # The transaction that just failed need not run again.
        if known_refused and len(rows) == 1:
            refused.add(rows[0].key)
            parts = []
        elif known_refused:
            parts = _halves(rows)
        budget = MAX_ISOLATION_TRANSACTIONS
        while parts and budget > 0:
            rows = parts.pop()
            budget -= 1
            try:
                stored |= await self._run_store(rows, submission.targets)
            except ValuesRefused as error:
                if len(rows) == 1:
                    log.warning("the database refused an event: %s", error.__cause__)
                    refused.add(rows[0].key)
                else:
                    parts += _halves(rows)
            except Exception as error:  # noqa: BLE001 - reported to the waiting stream
                log.warning("storing %d events failed: %s", len(rows), type(error).__name__)
                _fail(submission)
                return
        untried = {row.key for part in parts for row in part}
        self._resolve([submission], stored, refused, untried)

    @staticmethod
    def _resolve(
        batch: list[_Submission],
        stored: set[EventKey],
        refused: frozenset[EventKey] | set[EventKey] = frozenset(),
        untried: frozenset[EventKey] | set[EventKey] = frozenset(),
    ) -> None:
        """Tell each submission what became of each of its events. An event stored under
        its id counts as stored even if another copy of it was refused or left untried."""
        claimed: set[EventKey] = set()
        for submission in batch:
            outcome: list[Outcome] = []
            for row in submission.rows:
                if row.key in stored:
                    new = row.key not in claimed
                    outcome.append(Outcome.STORED if new else Outcome.DUPLICATE)
                    claimed.add(row.key)
                elif row.key in untried:
                    outcome.append(Outcome.UNTRIED)
                elif row.key in refused:
                    outcome.append(Outcome.REFUSED)
                else:
                    outcome.append(Outcome.DUPLICATE)
            if not submission.done.done():
                submission.done.set_result(outcome)


def _halves(rows: list[EventRow]) -> list[list[EventRow]]:
    """The two halves (never empty), the first last: parts are taken from the end."""
    middle = len(rows) // 2
    return [half for half in (rows[middle:], rows[:middle]) if half]


def _fail(submission: _Submission) -> None:
    if not submission.done.done():
        submission.done.set_exception(StorageFailed())
