"""What a failover drill does around the failure: agents streaming to a `veritas serve`
on a multi-host database URL, a teacher's watch, then the failure (the drill's own), and
the checks: every acknowledged event on the new primary exactly once, the attempts'
counters equal to COUNT(*), alerts flowing again. The seconds without service are
measured."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from sqlalchemy import create_engine, text
from veritas.v1 import auth_pb2_grpc, monitoring_pb2, monitoring_pb2_grpc

from tests.e2e.agent_helpers import free_port, wait_until
from tests.e2e.conftest import login
from tests.e2e.exam_helpers import open_window, published_exam, start, stubs
from tests.support import PASSWORD, ServerProcess, make_settings, unique_email
from veritas_grpc import bootstrap
from veritas_grpc.agent import Agent, PasswordCredentials
from veritas_grpc.domain.identity import Role

AGENTS = 6
# Quick retries: the outage lasts seconds.
FAST = {"flush_interval": 0.1, "batch_events": 50, "backoff_base": 0.1, "backoff_cap": 1.0}


@dataclass(frozen=True)
class Outage:
    """Seconds from the failure: until the standby was primary (as the drill saw it),
    until events were acknowledged again, until a watch received alerts again."""

    promoted: float
    acknowledging: float
    alerting: float
    events: int

    def __str__(self) -> str:
        return (
            f"promoted {self.promoted:.2f} s after the failure; events acknowledged again "
            f"after {self.acknowledging:.2f} s; alerts again after {self.alerting:.2f} s; "
            f"{self.events} events recorded, none lost"
        )


class Watch:
    """A teacher's WatchExamAlerts, reopened after each failure from the last sequence
    seen, as a dashboard would: the event ids of the alerts received."""

    def __init__(self, target: str, metadata, exam_id: str) -> None:
        self.alerts: list[str] = []
        self._last = 0
        self._stop = threading.Event()
        self._args = (target, metadata, exam_id)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        target, metadata, exam_id = self._args
        while not self._stop.is_set():
            try:
                with grpc.insecure_channel(target) as channel:
                    stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
                    request = monitoring_pb2.WatchExamAlertsRequest(
                        exam_id=exam_id, after_sequence=self._last
                    )
                    for message in stub.WatchExamAlerts(request, metadata=metadata, timeout=30):
                        if message.HasField("alert"):
                            self.alerts.append(message.alert.event_id)
                            self._last = message.alert.sequence
                        if self._stop.is_set():
                            return
            except grpc.RpcError:
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()


def _world(url: str, target: str):
    """A teacher's published exam and AGENTS students' attempts in progress."""
    services = bootstrap.build_services(make_settings(), url)
    try:
        teacher_email = unique_email("teacher")
        services.accounts.create_account(Role.TEACHER, teacher_email, PASSWORD, "T", None)
        students = []
        for n in range(AGENTS):
            email = unique_email("student")
            services.accounts.create_account(Role.STUDENT, email, PASSWORD, f"S{n}", f"F-{n}")
            students.append(email)
    finally:
        services.close()
    with grpc.insecure_channel(target) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        student_stub, teacher_stub = stubs(channel)
        teacher = login(auth, teacher_email)
        exam = published_exam(teacher_stub, teacher.metadata, **open_window())
        attempts = [
            (email, start(student_stub, login(auth, email), exam.id).id) for email in students
        ]
    return teacher, exam.id, attempts


def _stored(url: str) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Per attempt: stored rows, distinct event ids, and the attempt's event_count."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT attempt_id::text, count(*), count(DISTINCT event_id) "
                    "FROM monitoring_events GROUP BY attempt_id"
                )
            ).all()
            counters = connection.execute(
                text("SELECT id::text, event_count FROM exam_attempts")
            ).all()
    finally:
        engine.dispose()
    return (
        {row[0]: row[1] for row in rows},
        {row[0]: row[2] for row in rows},
        {row[0]: row[1] for row in counters},
    )


def drive_failover(
    url: str, fail: Callable[[], None], new_primary_url: str, tmp_path: Path, **env: str
) -> Outage:
    """Agents stream through a server on `url`; `fail()` breaks the primary and returns
    once a standby has been made primary; the agents resend; then every check."""
    port = free_port()
    server = ServerProcess(url, VERITAS_LISTEN=f"127.0.0.1:{port}", **env)
    target = f"127.0.0.1:{port}"
    agents: list[Agent] = []
    watch = None
    try:
        teacher, exam_id, attempts = _world(url, target)
        watch = Watch(target, teacher.metadata, exam_id)
        recorded: dict[str, list[str]] = {attempt: [] for _, attempt in attempts}
        for email, attempt in attempts:
            credentials = PasswordCredentials(email, PASSWORD)
            spool = tmp_path / f"{attempt}.spool"
            agents.append(Agent(target, credentials, attempt, spool_path=spool, **FAST))
        running = threading.Event()
        running.set()

        def record(agent: Agent) -> None:
            n = 0
            while running.is_set():
                anomaly = n % 50 == 0  # an alert now and then
                event_id = agent.record("gaze_away", is_anomaly=anomaly, data={"n": n})
                recorded[agent.attempt_id].append(event_id)
                n += 1
                time.sleep(0.004)

        recorders = [threading.Thread(target=record, args=(agent,)) for agent in agents]
        for thread in recorders:
            thread.start()
        wait_until(lambda: all(agent.stats().accepted >= 200 for agent in agents))
        wait_until(lambda: len(watch.alerts) >= AGENTS)

        accepted_before = sum(agent.stats().accepted for agent in agents)
        failed = time.monotonic()
        fail()
        promoted = time.monotonic()
        wait_until(
            lambda: sum(agent.stats().accepted for agent in agents) > accepted_before + 100,
            timeout=180,
        )
        back = time.monotonic()
        alerts_before = len(watch.alerts)
        wait_until(lambda: len(watch.alerts) > alerts_before + AGENTS, timeout=180)
        alerts_back = time.monotonic()

        running.clear()
        for thread in recorders:
            thread.join()
        for agent in agents:
            assert agent.close(timeout=120) == 0, "events left unsent"
    finally:
        if watch is not None:
            watch.stop()
        for agent in agents:
            agent.close(timeout=1)
        server.stop()
    _assert_each_stored_once(new_primary_url, recorded)
    return Outage(
        promoted - failed,
        back - failed,
        alerts_back - failed,
        sum(len(ids) for ids in recorded.values()),
    )


def _assert_each_stored_once(url: str, recorded: dict[str, list[str]]) -> None:
    rows, distinct, counters = _stored(url)
    for attempt, ids in recorded.items():
        assert distinct[attempt] == len(set(ids)) == len(ids), "an acknowledged event is missing"
        assert rows[attempt] == distinct[attempt], "an event is stored twice"
        assert counters[attempt] == rows[attempt], "counter and COUNT(*) differ"
