"""Backoff with full jitter, and events into StreamEvents messages."""

import random
import uuid

from veritas.v1 import monitoring_pb2, resources_pb2

from veritas_grpc.agent.backoff import Backoff
from veritas_grpc.agent.batching import encode_messages
from veritas_grpc.agent.credentials import TokenState


def test_full_jitter_stays_within_a_doubling_capped_window():
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(7))
    ceilings = []
    for _ in range(8):
        ceiling = backoff.ceiling()
        assert 0 <= backoff.next_delay() <= ceiling
        ceilings.append(ceiling)
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.ceiling() == 0.5


def test_full_jitter_spreads_over_the_whole_window():
    rng = random.Random(1)
    delays = []
    for _ in range(2000):
        backoff = Backoff(base=1.0, cap=4.0, rng=rng)
        backoff.failures = 5
        delays.append(backoff.next_delay())
    assert min(delays) < 0.2 and max(delays) > 3.8  # not bunched at the ceiling
    assert 1.8 < sum(delays) / len(delays) < 2.2


def test_a_long_outage_does_not_overflow():
    backoff = Backoff(base=0.5, cap=30.0)
    backoff.failures = 10_000
    assert backoff.next_delay() <= 30.0


def _event(size: int) -> bytes:
    return resources_pb2.MonitoringEvent(
        event_id=str(uuid.uuid4()), event_type="gaze_away", data_json="x" * size
    ).SerializeToString()


def test_messages_parse_back_to_the_events_in_order_within_the_size():
    events = [_event(n * 300) for n in range(40)]
    messages = encode_messages(events, max_bytes=4096)
    assert len(messages) > 1
    parsed = [
        e.SerializeToString()
        for m in messages
        for e in monitoring_pb2.StreamEventsRequest.FromString(m).events
    ]
    assert parsed == events
    assert all(
        len(m) <= 4096
        for m in messages
        if len(monitoring_pb2.StreamEventsRequest.FromString(m).events) > 1
    )


def test_an_event_larger_than_a_message_goes_alone():
    big, small = _event(5000), _event(10)
    messages = encode_messages([small, big, small], max_bytes=4096)
    sizes = [len(monitoring_pb2.StreamEventsRequest.FromString(m).events) for m in messages]
    assert sizes == [1, 1, 1]


def test_refresh_is_due_a_margin_before_the_lifetime_ends():
    state = TokenState("a", "r", obtained_at=1000.0, lifetime=900.0)
    assert not state.refresh_due(None, 1000.0 + 839)
    assert state.refresh_due(None, 1000.0 + 840)  # a minute before
    assert TokenState("a", "r", 0.0, 60.0).refresh_due(None, 45.0)  # a quarter of 60 s
    assert TokenState("a", "r", 0.0, 60.0).refresh_due(57.0, 3.0)
    assert not TokenState("a", "r", 0.0, None).refresh_due(None, 1e12)
