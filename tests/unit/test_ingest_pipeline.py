"""The ingestion pipeline with fakes of our own layers: coalescing, outcomes, failures."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from veritas_grpc.adapters import event_writer as writer_module
from veritas_grpc.adapters.event_writer import EventWriter
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.event_store import Outcome, StorageFailed, ValuesRefused
from veritas_grpc.domain.events import AttemptTarget, EventRow, EventWindow, IncomingEvent
from veritas_grpc.domain.exams import AttemptStatus
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.services import ingestion as stream_module
from veritas_grpc.services.ingestion import REFUSED, UNTRIED, IngestStream
from veritas_grpc.services.monitoring import MonitoringService

NOW = datetime.now(UTC)
SENDER = Principal(uuid.uuid4(), Role.SERVICE, "jti", uuid.uuid4(), NOW + timedelta(hours=1))


ATTEMPT = str(uuid.UUID(int=1))


def _row() -> EventRow:
    return EventRow(ATTEMPT, NOW, str(uuid.uuid4()), "tab_switch", "INTEGRITY", "INFO", False)


class FakeStore:
    """Stores in memory; remembers the size of every transaction."""

    def __init__(self, fail: bool = False) -> None:
        self.keys: set = set()
        self.batches: list[int] = []
        self.fail = fail

    def __call__(self, rows, targets):
        if self.fail:
            raise OSError("connection reset")
        self.batches.append(len(rows))
        new = {row.key for row in rows} - self.keys
        self.keys |= new
        return new


def _run(coroutine_factory):
    runner = BlockingRunner("test", 2)
    try:
        return asyncio.run(coroutine_factory(runner))
    finally:
        runner.shutdown()


def test_many_small_submissions_share_transactions_and_each_learns_its_own_outcome():
    store = FakeStore()
    shared = _row()

    async def scenario(runner):
        writer = EventWriter(store, runner, writers=1, max_rows=1000)
        writer.start()
        outcomes = await asyncio.gather(
            *(writer.submit([_row(), _row(), shared], {}) for _ in range(50))
        )
        await writer.stop()
        return outcomes

    outcomes = _run(scenario)
    assert sum(store.batches) == 150
    assert len(store.batches) < 50  # coalesced: fewer transactions than submissions
    assert all(outcome[:2] == [Outcome.STORED] * 2 for outcome in outcomes)
    shared_outcomes = [outcome[2] for outcome in outcomes]
    assert shared_outcomes.count(Outcome.STORED) == 1  # the shared event once
    assert shared_outcomes.count(Outcome.DUPLICATE) == 49


class Monitoring:
    """Every attempt exists and is in progress; counts its look-ups."""

    def __init__(self) -> None:
        self.looked_up: list[str] = []

    def targets(self, ids):
        self.looked_up += ids
        return {
            i: AttemptTarget(i, uuid.uuid4(), uuid.uuid4(), AttemptStatus.IN_PROGRESS, None, {})
            for i in ids
        }

    refusal = MonitoringService.refusal

    _late_grace = timedelta(seconds=60)


def test_a_failed_transaction_rejects_its_events_as_retryable():
    async def scenario(runner):
        writer = EventWriter(FakeStore(fail=True), runner, writers=1)
        writer.start()
        stream = IngestStream(SENDER, Monitoring(), writer, runner, lambda: NOW, EventWindow())
        await stream.add([_incoming(), _incoming()])
        outcome = await stream.finish()
        await writer.stop()
        return outcome

    outcome = _run(scenario)
    assert (outcome.accepted, outcome.rejected) == (0, 2)
    assert all(r.retryable for r in outcome.rejections)


def test_when_attempts_cannot_be_looked_up_events_are_rejected_retryably():
    class Broken:
        def targets(self, ids):
            raise OSError("database down")

    async def scenario(runner):
        writer = EventWriter(FakeStore(), runner, writers=1)
        stream = IngestStream(SENDER, Broken(), writer, runner, lambda: NOW, EventWindow())
        await stream.add([_incoming(), _incoming(event_type="BAD")])
        return await stream.finish()

    outcome = _run(scenario)
    assert outcome.rejected == 2
    assert [r.retryable for r in outcome.rejections] == [True, False]
    assert [r.index for r in outcome.rejections] == [0, 1]


def _incoming(**fields) -> IncomingEvent:
    values = {
        "event_id": str(uuid.uuid4()),
        "attempt_id": ATTEMPT,
        "event_type": "tab_switch",
        "category": None,
        "severity": None,
        "is_anomaly": False,
        "occurred_at": NOW - timedelta(seconds=1),
        "data_json": "",
        "description": "",
    }
    values.update(fields)
    return IncomingEvent(**values)


def test_a_batch_that_fails_is_retried_per_submission_so_others_are_not_refused():
    class PoisonStore(FakeStore):
        def __call__(self, rows, targets):
            if any(row.event_type == "poison" for row in rows):
                raise ValueError("the database refused a value")
            return super().__call__(rows, targets)

    store = PoisonStore()
    poison = EventRow(ATTEMPT, NOW, str(uuid.uuid4()), "poison", "INTEGRITY", "INFO", False)

    async def scenario(runner):
        writer = EventWriter(store, runner, writers=1, max_rows=1000)
        writer.start()
        results = await asyncio.gather(
            writer.submit([_row(), _row()], {}),
            writer.submit([poison], {}),
            writer.submit([_row()], {}),
            return_exceptions=True,
        )
        await writer.stop()
        return results

    first, failed, third = _run(scenario)
    assert first == [Outcome.STORED] * 2 and third == [Outcome.STORED]
    assert isinstance(failed, StorageFailed)


class RefusingStore(FakeStore):
    """Refuses, as PostgreSQL would a bad value, any batch with a "poison" event."""

    def __call__(self, rows, targets):
        self.calls = getattr(self, "calls", 0) + 1
        if any(row.event_type == "poison" for row in rows):
            raise ValuesRefused
        return super().__call__(rows, targets)


def _stream_outcome(store, messages):
    async def scenario(runner):
        writer = EventWriter(store, runner, writers=1, max_rows=5000)
        writer.start()
        stream = IngestStream(SENDER, Monitoring(), writer, runner, lambda: NOW, EventWindow())
        for message in messages:
            await stream.add(message)
        outcome = await stream.finish()
        await writer.stop()
        return outcome

    return _run(scenario)


def test_a_message_full_of_refused_values_holds_a_writer_only_so_long():
    store = RefusingStore()
    outcome = _stream_outcome(store, [[_incoming(event_type="poison") for _ in range(1000)]])
    assert (outcome.accepted, outcome.rejected) == (0, 1000)
    assert store.calls <= 1 + writer_module.MAX_ISOLATION_TRANSACTIONS
    refused = [r for r in outcome.rejections if r.refusal == REFUSED]
    untried = [r for r in outcome.rejections if r.refusal == UNTRIED]
    assert refused and len(refused) + len(untried) == 1000
    assert not any(r.retryable for r in refused) and all(r.retryable for r in untried)


def test_events_the_budget_left_untried_are_never_called_refused():
    events = [_incoming(event_type="poison" if n % 125 == 7 else "tab_switch") for n in range(1000)]
    outcome = _stream_outcome(RefusingStore(), [events])
    assert outcome.accepted + outcome.rejected == 1000
    reasons = {r.index: r.refusal for r in outcome.rejections}
    for index, event in enumerate(events):
        if event.event_type == "poison":
            assert reasons[index] in (REFUSED, UNTRIED)
        else:
            assert reasons.get(index) in (None, UNTRIED)  # stored, or to be resent
    assert REFUSED in reasons.values()
    assert outcome.accepted > 0


def test_an_event_both_refused_and_stored_under_one_id_counts_as_stored():
    event_id = str(uuid.uuid4())
    bad = _incoming(event_id=event_id, event_type="poison")
    good = _incoming(event_id=event_id, occurred_at=bad.occurred_at)
    outcome = _stream_outcome(RefusingStore(), [[bad, good, _incoming()]])
    assert (outcome.accepted, outcome.duplicates, outcome.rejected) == (2, 1, 0)


def test_only_the_events_the_database_refuses_are_refused():
    store = RefusingStore()

    async def scenario(runner):
        writer = EventWriter(store, runner, writers=1, max_rows=1000)
        writer.start()
        stream = IngestStream(SENDER, Monitoring(), writer, runner, lambda: NOW, EventWindow())
        events = [_incoming() for _ in range(7)]
        events[2] = _incoming(event_type="poison")
        events[5] = _incoming(event_type="poison")
        other = writer.submit([_row(), _row()], {})
        await stream.add(events)
        outcome, other_outcome = await asyncio.gather(stream.finish(), other)
        await writer.stop()
        return outcome, other_outcome

    outcome, other_outcome = _run(scenario)
    assert (outcome.accepted, outcome.duplicates, outcome.rejected) == (5, 0, 2)
    assert [r.index for r in outcome.rejections] == [2, 5]
    assert not any(r.retryable for r in outcome.rejections)
    assert other_outcome == [Outcome.STORED] * 2  # another stream's, in the same batch
    assert len(store.keys) == 7


def test_a_stream_naming_more_attempts_than_it_remembers_still_checks_each(monkeypatch):
    monkeypatch.setattr(stream_module, "MAX_TARGETS_PER_STREAM", 3)
    attempts = [str(uuid.uuid4()) for _ in range(5)]
    monitoring = Monitoring()

    async def scenario(runner):
        writer = EventWriter(FakeStore(), runner, writers=1)
        writer.start()
        stream = IngestStream(SENDER, monitoring, writer, runner, lambda: NOW, EventWindow())
        for attempt in attempts[:3]:
            await stream.add([_incoming(attempt_id=attempt)])
        # The first attempt is the oldest remembered and still fresh; the fourth is new.
        await stream.add([_incoming(attempt_id=attempts[0]), _incoming(attempt_id=attempts[3])])
        outcome = await stream.finish()
        await writer.stop()
        return outcome

    outcome = _run(scenario)
    assert (outcome.accepted, outcome.rejected) == (5, 0)
    assert monitoring.looked_up == attempts[:4]  # nothing fresh read twice
