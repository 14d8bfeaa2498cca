"""Ingestion, the use case of one agent stream: validate each event, check the sender
may write to its attempt, hand valid events to the event sink (a few messages in flight
at most), and add up the outcome for the final answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from veritas_grpc.domain.event_store import Outcome, StorageFailed
from veritas_grpc.domain.events import (
    UNKNOWN_ATTEMPT,
    AlertTarget,
    AttemptTarget,
    EventRow,
    EventWindow,
    IncomingEvent,
    Refusal,
    RefusalKind,
    check_event,
)
from veritas_grpc.domain.identity import Principal
from veritas_grpc.services.monitoring import MonitoringService

MAX_REPORTED_REJECTIONS = 1000
REFUSED = Refusal(
    RefusalKind.INVALID, "", "refused by the database (a value PostgreSQL cannot store)"
)
UNTRIED = Refusal(
    RefusalKind.UNAVAILABLE,
    "",
    "not stored: its message held many values the database refused; resend",
)
STORAGE_DOWN = Refusal(RefusalKind.UNAVAILABLE, "", "storage unavailable; resend")
# RecordEvent carries its event in the request's `event` field.
RECORDED_EVENT_FIELD = "event"
# How long an attempt's status, rules and exemptions are trusted before they are read
# again during a stream: an exemption granted or revoked meanwhile governs this stream's
# alerts from the next read on (README, "Event exemptions").
TARGET_TTL_SECONDS = 5.0
# Attempts one stream remembers; a stream naming more (random ids, say) forgets the
# oldest instead of growing.
MAX_TARGETS_PER_STREAM = 2000


class EventSink(Protocol):
    """Where checked events go to be stored: adapters.event_writer.EventWriter, which
    coalesces many streams' events into large transactions."""

    async def submit(
        self, rows: Sequence[EventRow], targets: dict[str, AlertTarget]
    ) -> list[Outcome]:
        """Store rows; the outcome of each, in order. Raises StorageFailed when they
        could not be committed."""
        ...


@dataclass(frozen=True)
class Rejection:
    """An event of the stream that was not stored: its position, its id and why."""

    index: int
    event_id: str
    refusal: Refusal

    @property
    def retryable(self) -> bool:
        return self.refusal.retryable

    def as_error(self) -> DomainError:
        """The refusal as RecordEvent answers it, with field paths from its request."""
        refusal = self.refusal
        if refusal.kind is RefusalKind.INVALID:
            path = ".".join(p for p in (RECORDED_EVENT_FIELD, refusal.field) if p)
            return InvalidArgument.of(path, refusal.problem)
        if refusal.kind is RefusalKind.NOT_FOUND:
            return NotFound("attempt not found")
        if refusal.kind is RefusalKind.NOT_IN_PROGRESS:
            return FailedPrecondition("the attempt is no longer in progress")
        return Unavailable("the event could not be stored; retry")


@dataclass
class StreamOutcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    # Every rejection by kind of reason (RefusalKind's value), also past the reported ones.
    rejected_by_kind: dict[str, int] = field(default_factory=dict)

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        kind = rejection.refusal.kind.value
        self.rejected_by_kind[kind] = self.rejected_by_kind.get(kind, 0) + 1
        if len(self.rejections) < MAX_REPORTED_REJECTIONS:
            self.rejections.append(rejection)


class EventIngestion:
    """Opens the ingestion stream of each StreamEvents or RecordEvent call."""

    def __init__(
        self,
        monitoring: MonitoringService,
        sink: EventSink,
        runner: BlockingRunner,
        clock: Callable[[], datetime],
        window: EventWindow,
    ) -> None:
        self._monitoring = monitoring
        self._sink = sink
        self._runner = runner
        self._clock = clock
        self._window = window

    def open(self, sender: Principal) -> IngestStream:
        return IngestStream(
            sender, self._monitoring, self._sink, self._runner, self._clock, self._window
        )


class IngestStream:
    def __init__(
        self,
        sender: Principal,
        monitoring: MonitoringService,
        writer: EventSink,
        runner: BlockingRunner,
        clock: Callable[[], datetime],
        window: EventWindow,
        max_in_flight: int = 4,
    ) -> None:
        self._sender = sender
        self._sender_id = str(sender.user_id)
        self._monitoring = monitoring
        self._writer = writer
        self._runner = runner
        self._clock = clock
        self._window = window
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: set[asyncio.Task[None]] = set()
        self._targets: dict[str, tuple[float, AttemptTarget | None]] = {}
        self._next_index = 0
        self.outcome = StreamOutcome()

    async def add(self, events: Sequence[IncomingEvent]) -> None:
        """Take one message's events. Returns once they are queued for writing (waiting
        for a free slot first, which is what holds a fast agent back)."""
        first = self._next_index
        self._next_index += len(events)
        now = self._clock()
        checked: list[tuple[int, EventRow]] = []
        for offset, event in enumerate(events):
            result = check_event(event, now, self._window)
            if isinstance(result, Refusal):
                self.outcome.reject(Rejection(first + offset, event.event_id, result))
            else:
                checked.append((first + offset, result))
        writable, alert_targets = await self._writable(checked, now)
        if not writable:
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._write(writable, alert_targets))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def finish(self) -> StreamOutcome:
        """Wait until every queued event is committed (or refused); the stream's answer."""
        while self._pending:
            await asyncio.gather(*list(self._pending))
        self.outcome.rejections.sort(key=lambda rejection: rejection.index)
        return self.outcome

    async def record(self, event: IncomingEvent) -> bool:
        """RecordEvent: one event by the same rules. True when it had been stored before;
        a refusal is raised as the domain error RecordEvent answers with."""
        await self.add([event])
        outcome = await self.finish()
        if outcome.rejections:
            raise outcome.rejections[0].as_error()
        return outcome.duplicates == 1

    async def _writable(
        self, checked: list[tuple[int, EventRow]], now: datetime
    ) -> tuple[list[tuple[int, EventRow]], dict[str, AlertTarget]]:
        """The events the sender may write now, and where their alerts go."""
        try:
            targets = await self._targets_of({row.attempt_id for _, row in checked})
        except Unauthenticated:
            raise  # the call's token check, in its first transaction: not an outage
        except Exception:  # noqa: BLE001 - the database is down: refuse, retryably, per event
            for index, row in checked:
                self.outcome.reject(Rejection(index, row.event_id, STORAGE_DOWN))
            return [], {}
        # One decision per attempt, not per event: a message's events share a few.
        allowed: dict[str, AttemptTarget] = {}
        refused: dict[str, Refusal] = {}
        for attempt_id, target in targets.items():
            refusal = self._monitoring.refusal(self._sender, target, now)
            if refusal is None and target is not None:
                allowed[attempt_id] = target
            else:
                refused[attempt_id] = refusal or UNKNOWN_ATTEMPT
        writable = []
        for index, row in checked:
            target = allowed.get(row.attempt_id)
            if target is None:
                self.outcome.reject(Rejection(index, row.event_id, refused[row.attempt_id]))
                continue
            if row.severity is None:
                row.severity = target.severity_for(row.event_type)
            row.sent_by = self._sender_id
            writable.append((index, row))
        return writable, {a: target.alert_target for a, target in allowed.items()}

    async def _targets_of(self, attempt_ids: set[str]) -> dict[str, AttemptTarget | None]:
        """The attempts named (None: no such attempt), read again once TTL old."""
        fresh_after = time.monotonic() - TARGET_TTL_SECONDS
        found: dict[str, AttemptTarget | None] = {}
        stale = []
        for attempt_id in attempt_ids:
            stamp, target = self._targets.get(attempt_id, (0.0, None))
            if stamp >= fresh_after:
                found[attempt_id] = target
            else:
                stale.append(attempt_id)
        if stale:
            loaded = await self._runner.run(self._monitoring.targets, stale)
            stamp = time.monotonic()
            for attempt_id in stale:
                found[attempt_id] = loaded.get(attempt_id)
                self._targets.pop(attempt_id, None)
                self._targets[attempt_id] = (stamp, found[attempt_id])
            while len(self._targets) > MAX_TARGETS_PER_STREAM:
                del self._targets[next(iter(self._targets))]
        return found

    async def _write(
        self, batch: list[tuple[int, EventRow]], alert_targets: dict[str, AlertTarget]
    ) -> None:
        try:
            outcome = await self._writer.submit([row for _, row in batch], alert_targets)
            for (index, row), result in zip(batch, outcome, strict=True):
                if result is Outcome.STORED:
                    self.outcome.accepted += 1
                elif result is Outcome.DUPLICATE:
                    self.outcome.duplicates += 1
                elif result is Outcome.REFUSED:
                    self.outcome.reject(Rejection(index, row.event_id, REFUSED))
                else:
                    self.outcome.reject(Rejection(index, row.event_id, UNTRIED))
        except StorageFailed:
            for index, row in batch:
                self.outcome.reject(Rejection(index, row.event_id, STORAGE_DOWN))
        finally:
            self._slots.release()
