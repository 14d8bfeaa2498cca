"""The sender's rules with a fake transport: resend unchanged, settle per event, renew
the session once on UNAUTHENTICATED (no server, no socket)."""

import asyncio
import uuid

import grpc
from veritas.v1 import monitoring_pb2, resources_pb2

from veritas_grpc.agent.backoff import Backoff
from veritas_grpc.agent.credentials import TokenCredentials
from veritas_grpc.agent.sender import Sender, SenderSettings
from veritas_grpc.agent.session import Session
from veritas_grpc.agent.spool import Spool
from veritas_grpc.agent.transport import CallFailed, Pair


class FakeTransport:
    """Answers each StreamEvents call with the next scripted outcome: an exception, a
    function of the events sent, or (once the script is done) all accepted."""

    def __init__(self, script=()):
        self.script = list(script)
        self.streams: list[list[bytes]] = []
        self.tokens_sent: list[str] = []
        self.refreshed = 0

    async def stream_events(self, messages, access_token, timeout):
        self.streams.append(messages)
        self.tokens_sent.append(access_token)
        events = [
            e for m in messages for e in monitoring_pb2.StreamEventsRequest.FromString(m).events
        ]
        outcome = self.script.pop(0) if self.script else None
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is not None:
            return outcome(events)
        return monitoring_pb2.StreamEventsResponse(accepted_count=len(events))

    async def refresh(self, refresh_token, timeout):
        self.refreshed += 1
        return Pair(f"access-{self.refreshed}", f"refresh-{self.refreshed}")

    async def login(self, email, password, timeout):
        raise AssertionError("token credentials never log in")


def _events(n):
    return [
        resources_pb2.MonitoringEvent(event_id=str(uuid.uuid4()), event_type="gaze_away")
        for _ in range(n)
    ]


def _drain(tmp_path, transport, events, **callbacks):
    spool = Spool(tmp_path / "s", max_events=100)
    for event in events:
        spool.add(event.SerializeToString(), 0.0)
    session = Session(TokenCredentials("access-0", "refresh-0"), spool, transport)

    async def run():
        sender = Sender(
            spool,
            session,
            transport,
            SenderSettings(flush_interval=0.01, batch_events=3, stream_timeout=1),
            Backoff(base=0.001, cap=0.002),
            **callbacks,
        )
        sender.close()  # drain what is spooled, then stop
        await asyncio.wait_for(sender.run(), 10)
        return sender

    return asyncio.run(run()), spool


def test_an_unanswered_stream_is_resent_unchanged(tmp_path):
    down = CallFailed(grpc.StatusCode.UNAVAILABLE, "server gone")
    late = CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "slow")
    transport = FakeTransport([down, late])
    sender, spool = _drain(tmp_path, transport, _events(5))
    assert transport.streams[0] == transport.streams[1] == transport.streams[2]
    assert len(transport.streams) == 4  # then the last 2 of the 5 events
    assert sender.delivery.stream_failures == 2 and spool.count == 0


def test_rejections_settle_per_event(tmp_path):
    def answer(events):
        return monitoring_pb2.StreamEventsResponse(
            accepted_count=1,
            rejected_count=2,
            rejections=[
                monitoring_pb2.Rejection(index=0, event_id=events[0].event_id, reason="bad"),
                monitoring_pb2.Rejection(
                    index=2, event_id=events[2].event_id, reason="storage", retryable=True
                ),
            ],
        )

    events = _events(3)
    rejected, errors = [], []
    transport = FakeTransport([answer])
    sender, spool = _drain(
        tmp_path, transport, events, on_rejected=rejected.append, on_error=errors.append
    )
    assert [r.event.event_id for r in rejected] == [events[0].event_id]
    assert rejected[0].reason == "bad"
    # Only the retryable one goes again; the rejected one never does.
    resent = monitoring_pb2.StreamEventsRequest.FromString(transport.streams[1][0]).events
    assert [e.event_id for e in resent] == [events[2].event_id]
    assert len(transport.streams) == 2 and spool.count == 0 and not errors
    assert (sender.delivery.rejected, sender.delivery.retryable_rejections) == (1, 1)


def test_unauthenticated_renews_the_session_once_then_reports(tmp_path):
    refused = CallFailed(grpc.StatusCode.UNAUTHENTICATED, "expired")
    transport = FakeTransport([refused, refused, refused])
    errors = []
    sender, spool = _drain(tmp_path, transport, _events(1), on_error=errors.append)
    # stream, renew, stream again: refused twice -> reported; the next try renews again.
    assert transport.tokens_sent[:2] == ["access-0", "access-1"]
    assert [e.code for e in errors] == [grpc.StatusCode.UNAUTHENTICATED]
    assert spool.count == 0 and transport.refreshed == 2
    # The rotated pair is in the spool, for the next process.
    assert spool.tokens().refresh == "refresh-2"
