"""Three `veritas serve` processes behind Envoy with the shipped deploy/envoy-lb.yaml:
300 agents through Envoy are spread over all three and every event is stored once; a
teacher watching on one backend sees the alerts the others ingested; one backend is
SIGKILLed mid-run and Envoy routes around it while the agents resend. A drill (make
drills): ~1 minute on 2 cores."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid

import grpc
import pytest
from sqlalchemy import text
from veritas.v1 import auth_pb2_grpc, monitoring_pb2, monitoring_pb2_grpc

from tests.e2e.agent_helpers import free_port, wait_until
from tests.e2e.conftest import login
from tests.e2e.envoy_proxy import DEPLOY, run_envoy_config
from tests.e2e.exam_helpers import open_window, published_exam, start, stubs
from tests.support import PASSWORD, ServerProcess, unique_email
from veritas_grpc.agent import Agent, PasswordCredentials
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.domain.identity import Role

pytestmark = [pytest.mark.drill, pytest.mark.timeout(300)]
LB_CONFIG = DEPLOY / "envoy-lb.yaml"
SHIPPED_BACKENDS = (50051, 50052, 50053)
AGENTS = 300
EVENTS_BEFORE, EVENTS_AFTER = 10, 10
FAST = {"flush_interval": 0.2, "batch_events": 50, "backoff_base": 0.1, "backoff_cap": 1.0}


def _backend_requests(admin_port: int) -> dict[int, int]:
    """Requests Envoy sent to each backend port (its admin /clusters statistics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters?format=json") as answer:
        clusters = json.load(answer)["cluster_statuses"]
    [veritas] = [c for c in clusters if c["name"] == "veritas"]
    counts = {}
    for host in veritas["host_statuses"]:
        port = host["address"]["socket_address"]["port_value"]
        stats = {s["name"]: int(s.get("value", 0)) for s in host["stats"]}
        counts[port] = stats.get("rq_total", 0)
    return counts


class AlertWatch:
    """A teacher's WatchExamAlerts on one backend: the event ids alerted."""

    def __init__(self, address: str, metadata, exam_id: str) -> None:
        self.event_ids: set[str] = set()
        self._channel = grpc.insecure_channel(address)
        stub = monitoring_pb2_grpc.MonitoringServiceStub(self._channel)
        request = monitoring_pb2.WatchExamAlertsRequest(exam_id=exam_id)
        self._call = stub.WatchExamAlerts(request, metadata=metadata, timeout=300)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self._call:
                if message.HasField("alert"):
                    self.event_ids.add(message.alert.event_id)
        except grpc.RpcError:
            pass  # cancelled at the end

    def close(self) -> None:
        self._call.cancel()
        self._channel.close()


def test_agents_spread_over_three_backends_and_one_killed_loses_nothing(
    database_url, services, tmp_path
):
    backends = [ServerProcess(database_url) for _ in SHIPPED_BACKENDS]
    ports = [int(server.address.rsplit(":", 1)[1]) for server in backends]
    admin_port = free_port()
    agents: list[Agent] = []
    watch = None
    try:
        with run_envoy_config(
            LB_CONFIG, tmp_path, dict(zip(SHIPPED_BACKENDS, ports, strict=True)), admin_port
        ) as envoy_port:
            edge = f"127.0.0.1:{envoy_port}"
            teacher, exam_id, attempts = _world(services, edge)
            watch = AlertWatch(backends[0].address, teacher.metadata, exam_id)
            for email, attempt in attempts:
                credentials = PasswordCredentials(email, PASSWORD)
                spool = tmp_path / f"{attempt}.spool"
                agents.append(Agent(edge, credentials, attempt, spool_path=spool, **FAST))
            recorded: dict[str, list[str]] = {attempt: [] for _, attempt in attempts}
            anomalies: set[str] = set()

            def record_all(count: int) -> None:
                for n in range(count):
                    for agent in agents:
                        anomalous = (n + hash(agent.attempt_id)) % 5 == 0
                        event_id = agent.record("tab_switch", is_anomaly=anomalous)
                        recorded[agent.attempt_id].append(event_id)
                        if anomalous:
                            anomalies.add(event_id)
                    time.sleep(0.05)

            record_all(EVENTS_BEFORE)
            wait_until(lambda: all(a.stats().accepted >= EVENTS_BEFORE // 2 for a in agents))
            spread = _backend_requests(admin_port)
            backends[1].process.kill()  # SIGKILL, streams in flight cut
            backends[1].process.wait(timeout=10)
            record_all(EVENTS_AFTER)
            for agent in agents:
                assert agent.close(timeout=120) == 0, "events left unsent"
            after = _backend_requests(admin_port)
            wait_until(lambda: anomalies <= watch.event_ids, timeout=60)
    finally:
        if watch is not None:
            watch.close()
        for agent in agents:
            agent.close(timeout=1)
        for server in backends:
            server.stop()

    print(f"\nrequests per backend before the kill {spread}, at the end {after}")
    assert all(spread[port] >= AGENTS // 10 for port in ports), spread
    survivors = [ports[0], ports[2]]
    assert sum(after[p] - spread[p] for p in survivors) > 0, (spread, after)
    _assert_stored_once(services, recorded)


def _world(services, edge: str):
    teacher_email = unique_email("teacher")
    services.accounts.create_account(Role.TEACHER, teacher_email, PASSWORD, "Lb Teacher", None)
    emails = []
    for n in range(AGENTS):
        email = unique_email("lbstudent")
        enrollment = f"LB-{uuid.uuid4().hex[:10]}"
        services.accounts.create_account(Role.STUDENT, email, PASSWORD, f"Lb {n}", enrollment)
        emails.append(email)
    with grpc.insecure_channel(edge) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        student_stub, teacher_stub = stubs(channel)
        teacher = login(auth, teacher_email)
        exam = published_exam(teacher_stub, teacher.metadata, **open_window())
        attempts = [(e, start(student_stub, login(auth, e), exam.id).id) for e in emails]
    return teacher, exam.id, attempts


def _assert_stored_once(services, recorded: dict[str, list[str]]) -> None:
    with make_session_factory(services.engine)() as session:
        rows = session.execute(
            text(
                "SELECT e.attempt_id::text, count(*), count(DISTINCT e.event_id), a.event_count "
                "FROM monitoring_events e JOIN exam_attempts a ON a.id = e.attempt_id "
                "WHERE e.attempt_id = ANY(CAST(:ids AS uuid[])) "
                "GROUP BY e.attempt_id, a.event_count"
            ),
            {"ids": list(recorded)},
        ).all()
    found = {row[0]: row[1:] for row in rows}
    for attempt, ids in recorded.items():
        stored, distinct, counter = found[attempt]
        assert distinct == len(set(ids)) == len(ids) == stored == counter, attempt
