"""The alert broker's sequencing with a fake store (issue 10, item 12): each alert once,
in sequence order; gaps filled from the store before newer alerts; a catch-up on every
LISTEN reconnect; slow watchers refill instead of dropping; only alerts the store lost
are counted as dropped; the listener's reconnect backoff resets after a success."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

from veritas_grpc.adapters import alert_listener
from veritas_grpc.adapters.alert_listener import AlertBroker, AlertListener, Watcher
from veritas_grpc.domain.errors import Unavailable

EXAM = uuid.uuid4()


def alert(sequence: int) -> dict:
    return {"event_id": f"e{sequence}", "sequence": sequence}


class FakeStore:
    """The alert log of one exam: numbers 1..last, minus those removed (retention) and
    with None for those whose event is gone."""

    def __init__(self) -> None:
        self.rows: dict[int, dict | None] = {}
        self.reads: list[tuple[int, int]] = []
        self.down = 0  # reads that fail before it answers again

    def add(self, *sequences: int) -> None:
        for sequence in sequences:
            self.rows[sequence] = alert(sequence)

    def last_sequence(self, exam_id: uuid.UUID) -> int:
        return max(self.rows, default=0) if exam_id == EXAM else 0

    def page(self, exam_id: uuid.UUID, after: int, limit: int) -> list[tuple[int, dict | None]]:
        self.reads.append((after, limit))
        if self.down:
            self.down -= 1
            raise Unavailable("down")
        if exam_id != EXAM:
            return []
        return [(s, self.rows[s]) for s in sorted(self.rows) if s > after][:limit]

    async def fetch(self, exam_id: uuid.UUID, after: int, limit: int):
        return self.page(exam_id, after, limit)


class InlineRunner:
    async def run(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


def payload(first: int, count: int, exam: uuid.UUID = EXAM) -> str:
    alerts = [{"event_id": f"e{s}"} for s in range(first, first + count)]
    return json.dumps({"exam_id": str(exam), "alerts": alerts, "first_sequence": first})


async def drain(watcher: Watcher, timeout: float = 0.05) -> list[int]:
    """The sequences the watcher delivers until it has nothing for `timeout` seconds."""
    delivered = []
    while (item := await watcher.next(timeout)) is not None:
        delivered.append(item["sequence"])
    return delivered


def test_contiguous_live_alerts_are_delivered_once_in_order_without_reading_the_store():
    store = FakeStore()

    async def scenario():
        watcher = Watcher(EXAM, 0, store.fetch)
        for sequence in (1, 2, 2, 1, 3):  # repeats, as a catch-up and NOTIFY may overlap
            watcher.offer(alert(sequence))
        return await drain(watcher), watcher

    delivered, watcher = asyncio.run(scenario())
    assert delivered == [1, 2, 3]
    assert store.reads == [] and watcher.dropped == 0 and watcher.last_sequence == 3


def test_a_gap_is_filled_from_the_store_before_the_newer_alerts():
    store = FakeStore()
    store.add(1, 2, 3, 4, 5)

    async def scenario():
        watcher = Watcher(EXAM, 1, store.fetch)
        watcher.offer(alert(4))  # 2 and 3 were not NOTIFYed to this process
        watcher.offer(alert(5))
        return await drain(watcher), watcher

    delivered, watcher = asyncio.run(scenario())
    assert delivered == [2, 3, 4, 5]
    assert store.reads[0][0] == 1 and watcher.dropped == 0


def test_every_reconnect_catches_watchers_up_from_the_store():
    store = FakeStore()

    async def scenario():
        broker = AlertBroker(store, InlineRunner())
        watcher = await broker.subscribe(EXAM, None)
        other_exam = await broker.subscribe(uuid.uuid4(), None)
        broker.publish(payload(1, 2))
        store.add(1, 2)
        first = await drain(watcher)
        store.add(3, 4)  # committed while the LISTEN connection was down: no NOTIFY
        nothing = await drain(watcher)
        broker.reconnected()
        caught_up = await drain(watcher)
        broker.publish(payload(4, 2))  # 4 arrives again (live), 5 is new
        store.add(5)
        later = await drain(watcher)
        return first, nothing, caught_up, later, await drain(other_exam)

    first, nothing, caught_up, later, other = asyncio.run(scenario())
    assert (first, nothing, caught_up, later, other) == ([1, 2], [], [3, 4], [5], [])


def test_a_watch_without_a_resume_point_starts_after_the_exams_last_alert():
    store = FakeStore()
    store.add(1, 2, 3)

    async def scenario():
        broker = AlertBroker(store, InlineRunner())
        watcher = await broker.subscribe(EXAM, None)
        broker.publish(payload(3, 1))  # committed before the watch began: not delivered
        broker.publish(payload(4, 1))
        store.add(4)
        return watcher.latest_sequence, await drain(watcher)

    assert asyncio.run(scenario()) == (3, [4])


def test_a_resumed_watch_delivers_what_it_missed_then_the_live_alerts_once():
    store = FakeStore()
    store.add(*range(1, 8))

    async def scenario():
        broker = AlertBroker(store, InlineRunner())
        watcher = await broker.subscribe(EXAM, 3)
        broker.publish(payload(6, 3))  # 6 and 7 are in the store too; 8 is new
        store.add(8)
        return await drain(watcher)

    assert asyncio.run(scenario()) == [4, 5, 6, 7, 8]


def test_a_slow_watcher_falls_behind_and_refills_from_the_store_in_pages():
    store = FakeStore()

    async def scenario():
        watcher = Watcher(EXAM, 0, store.fetch, queue_limit=3, page=4)
        for sequence in range(1, 21):
            store.add(sequence)
            watcher.offer(alert(sequence))  # only 1..3 fit in its queue
        return await drain(watcher), watcher

    delivered, watcher = asyncio.run(scenario())
    assert delivered == list(range(1, 21)) and watcher.dropped == 0
    # Catch-up reads pages after what was delivered: memory stays bounded.
    assert [after for after, _ in store.reads][:4] == [3, 7, 11, 15]
    assert all(limit == 4 for _, limit in store.reads)


def test_only_alerts_the_store_no_longer_has_are_counted_as_dropped():
    store = FakeStore()
    store.add(1, 4, 5, 6)
    store.rows[5] = None  # its event's partition was dropped

    async def scenario():
        watcher = Watcher(EXAM, 0, store.fetch)
        watcher.mark_stale()
        delivered = await drain(watcher)
        return delivered, watcher

    delivered, watcher = asyncio.run(scenario())
    assert delivered == [1, 4, 6]
    assert watcher.dropped == 3 and watcher.last_sequence == 6  # 2 and 3 removed, 5 empty


def test_a_live_alert_past_what_the_store_still_holds_counts_the_rest_as_dropped():
    store = FakeStore()
    store.add(1)  # 2..4 removed by retention after 5 was NOTIFYed

    async def scenario():
        watcher = Watcher(EXAM, 0, store.fetch)
        watcher.offer(alert(5))
        return await drain(watcher), watcher

    delivered, watcher = asyncio.run(scenario())
    assert delivered == [1, 5] and watcher.dropped == 3


def test_an_unavailable_store_is_read_again_and_the_watch_goes_on(monkeypatch):
    monkeypatch.setattr(alert_listener, "STORE_RETRY_SECONDS", 0.05)
    store = FakeStore()
    store.add(1, 2)
    store.down = 3

    async def scenario():
        watcher = Watcher(EXAM, 0, store.fetch)
        watcher.mark_stale()
        early = await watcher.next(0.01)  # the store is down: nothing yet, no error
        return early, await drain(watcher, timeout=1.0)

    early, delivered = asyncio.run(scenario())
    assert early is None and delivered == [1, 2]
    assert len(store.reads) == 4  # three failures, one success


def test_an_unnumbered_notification_sends_watchers_to_the_store():
    store = FakeStore()

    async def scenario():
        broker = AlertBroker(store, InlineRunner())
        watcher = await broker.subscribe(EXAM, None)
        store.add(1)
        broker.publish(json.dumps({"exam_id": str(EXAM), "alerts": [{"event_id": "e1"}]}))
        broker.publish("not json")
        return await drain(watcher)

    assert asyncio.run(scenario()) == [1]


class _QuietBroker:
    def publish(self, payload: str) -> None: ...

    def reconnected(self) -> None: ...


class _FakeStop:
    """The listener's stop event: records the reconnect delays, stops after `rounds`."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.waits: list[float] = []

    def is_set(self) -> bool:
        return len(self.waits) >= self.rounds

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return self.is_set()

    def set(self) -> None:
        self.rounds = 0


def test_the_reconnect_backoff_resets_after_a_successful_connection():
    """The issue's measured losses: the delay doubled to 10 s and never came back down,
    so from the second outage on the listener stayed away ~10 s after the database
    returned. Each connection here succeeds (LISTEN in place) and is then lost."""
    loop = asyncio.new_event_loop()
    listener = AlertListener("postgresql+psycopg2://nobody@127.0.0.1:9/none", _QuietBroker())  # type: ignore[arg-type]
    stop = _FakeStop(rounds=8)
    listener._stop = stop  # type: ignore[assignment]
    listener._loop = loop

    def connect_then_lose() -> None:
        connected = getattr(listener, "_connected", None)
        if connected is not None:
            connected()
        raise ConnectionError("the server closed the connection")

    listener._listen = connect_then_lose  # type: ignore[method-assign]
    thread = threading.Thread(target=listener._run)
    thread.start()
    thread.join(timeout=5)
    loop.close()
    assert len(stop.waits) == 8
    assert max(stop.waits) <= 0.5, stop.waits


def test_the_reconnect_backoff_grows_to_a_short_cap_while_connecting_fails():
    backoff = alert_listener.Backoff()
    delays = [backoff.delay() for _ in range(8)]
    assert delays[0] <= 0.25 and delays == sorted(delays) and max(delays) <= 2.0
    backoff.reset()
    assert backoff.delay() == delays[0]
