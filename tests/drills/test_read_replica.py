"""Read replicas (docs/OPERATIONS.md, "Read replicas"): a server with
VERITAS_DATABASE_READ_URL on a streaming standby. While the standby keeps up, the RPCs
whose contract says READ_SOURCE_REPLICA read it (veritas_db_reads_total, health service
`replica` SERVING). Delayed on purpose (recovery_min_apply_delay, 30 s), it falls
behind, and none of those RPCs answers with data older than it promises
(VERITAS_REPLICA_MAX_LAG_SECONDS + 0.5 s): a grade, a review and an event written now are
in every answer a few seconds later, while the standby itself still lacks them. Stopped,
reads go on from the primary; started again without the delay, they return to it."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from veritas.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    analysis_pb2,
    analysis_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    monitoring_pb2,
    monitoring_pb2_grpc,
    teacher_pb2,
    teacher_pb2_grpc,
)

from tests.drills import replication
from tests.e2e.agent_helpers import free_port, wait_until
from tests.e2e.conftest import login
from tests.e2e.exam_helpers import open_window, published_exam, start, stubs, submit
from tests.e2e.monitoring_helpers import critical, stream
from tests.support import PASSWORD, ServerProcess, make_settings, unique_email
from veritas_grpc import bootstrap
from veritas_grpc.domain.identity import Role
from veritas_grpc.interceptors.read_source import REPLICA_METHODS

pytestmark = [pytest.mark.server_fault, pytest.mark.timeout(300)]
MAX_LAG_SECONDS = 1.0
PROBE_SECONDS = 0.5
APPLY_DELAY = "30s"
# The promise, and a margin for a loaded machine (still far inside the apply delay).
PROMISED_SECONDS = MAX_LAG_SECONDS + PROBE_SECONDS
MARGIN_SECONDS = 3.0


@pytest.fixture
def standby_pair():
    with replication.migrated_pair("veritas-replica-", 57000, synchronous=False) as clusters:
        yield clusters


def _reads(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
        text = answer.read().decode()
    found = re.findall(r'veritas_db_reads_total\{source="(\w+)"\} ([0-9.e+]+)', text)
    return {source: float(value) for source, value in found}


# The audit rows of the READ_SOURCE_REPLICA RPCs Views calls (the dashboard's only
# when it shows flagged attempts, GetHighRiskSummary's never: it names no student).
AUDITED_READS = (
    "exam.read_analytics",
    "exam.read_flagged",
    "attempt.read_monitoring",
    "attempt.read_events",
    "attempt.search",
)


def _audited_reads(primary) -> int:
    listed = ", ".join(f"'{action}'" for action in AUDITED_READS)
    counted = f"SELECT count(*) FROM audit_logs WHERE action IN ({listed})"
    return int(primary.sql(counted, "veritas"))


def _replica_health(channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service="replica")).status


class Views:
    """Every READ_SOURCE_REPLICA RPC, called as the teacher or the admin."""

    def __init__(self, channel, teacher, admin, exam_id: str, attempt_id: str) -> None:
        self.teacher, self.admin = teacher.metadata, admin.metadata
        self.exam_id, self.attempt_id = exam_id, attempt_id
        self.teach = teacher_pb2_grpc.TeacherServiceStub(channel)
        self.monitor = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        self.analysis = analysis_pb2_grpc.AnalysisServiceStub(channel)
        self.oversight = admin_pb2_grpc.AdminServiceStub(channel)

    def calls(self) -> dict[str, Callable[[], Any]]:
        teacher, admin = self.teacher, self.admin
        exam, attempt = self.exam_id, self.attempt_id
        return {
            "GetExamAnalytics": lambda: self.teach.GetExamAnalytics(
                teacher_pb2.GetExamAnalyticsRequest(exam_id=exam), metadata=teacher
            ),
            "GetTeacherDashboard": lambda: self.teach.GetTeacherDashboard(
                teacher_pb2.GetTeacherDashboardRequest(), metadata=teacher
            ),
            "ListFlaggedAttempts": lambda: self.teach.ListFlaggedAttempts(
                teacher_pb2.ListFlaggedAttemptsRequest(exam_id=exam), metadata=teacher
            ),
            "GetAttemptMonitoring": lambda: self.teach.GetAttemptMonitoring(
                teacher_pb2.GetAttemptMonitoringRequest(attempt_id=attempt), metadata=teacher
            ),
            "ListEvents": lambda: self.monitor.ListEvents(
                monitoring_pb2.ListEventsRequest(attempt_id=attempt), metadata=teacher
            ),
            "GetHighRiskSummary": lambda: self.analysis.GetHighRiskSummary(
                analysis_pb2.GetHighRiskSummaryRequest(), metadata=admin
            ),
            "SearchAttempts": lambda: self.oversight.SearchAttempts(
                admin_pb2.SearchAttemptsRequest(exam_id=exam), metadata=admin
            ),
        }

    def answers(self) -> dict[str, object]:
        """What each says about the attempt: its points, its flag, its events."""
        found = {name: call() for name, call in self.calls().items()}
        analytics, dashboard = found["GetExamAnalytics"], found["GetTeacherDashboard"]
        flagged, monitoring = found["ListFlaggedAttempts"], found["GetAttemptMonitoring"]
        events, risk, search = (
            found["ListEvents"],
            found["GetHighRiskSummary"],
            found["SearchAttempts"],
        )
        [overview] = [o for o in dashboard.exams if o.exam.id == self.exam_id]
        return {
            "GetExamAnalytics": analytics.analytics.HasField("mean_points"),
            "GetTeacherDashboard": overview.analytics.HasField("mean_points"),
            "ListFlaggedAttempts": len(flagged.attempts) == 1,
            "GetAttemptMonitoring": monitoring.attempt.HasField("points"),
            "ListEvents": len(events.events),
            "GetHighRiskSummary": any(e.exam_id == self.exam_id for e in risk.most_flagged_exams),
            "SearchAttempts": search.attempts[0].HasField("points"),
        }


def _signed_out(channel, email: str):
    """A fresh session of the account, signed out: its token revoked on the primary."""
    signed_in = login(auth_pb2_grpc.AuthServiceStub(channel), email)
    auth_pb2_grpc.AuthServiceStub(channel).Logout(
        auth_pb2.LogoutRequest(refresh_token=signed_in.refresh_token),
        metadata=signed_in.metadata,
    )
    return signed_in


def _world(url: str, channel):
    services = bootstrap.build_services(make_settings(), url)
    try:
        emails = {role: unique_email(role.value) for role in (Role.TEACHER, Role.ADMIN)}
        for role, email in emails.items():
            services.accounts.create_account(role, email, PASSWORD, role.value, None)
        student_email = unique_email("student")
        services.accounts.create_account(Role.STUDENT, student_email, PASSWORD, "S", "R-1")
    finally:
        services.close()
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    student_stub, teacher_stub = stubs(channel)
    teacher, admin = login(auth, emails[Role.TEACHER]), login(auth, emails[Role.ADMIN])
    student = login(auth, student_email)
    exam = published_exam(teacher_stub, teacher.metadata, **open_window())
    attempt = start(student_stub, student, exam.id)
    stream(channel, student.metadata, [[critical(attempt.id)]])
    return teacher, admin, student, exam.id, attempt.id


def test_replica_reads_are_never_older_than_promised(standby_pair):
    primary, standby = standby_pair
    metrics_port, port = free_port(), free_port()
    server = ServerProcess(
        replication.database_url([primary], "veritas"),
        VERITAS_LISTEN=f"127.0.0.1:{port}",
        VERITAS_DATABASE_READ_URL=replication.database_url([standby], "veritas").replace(
            "&target_session_attrs=read-write", ""
        ),
        VERITAS_REPLICA_MAX_LAG_SECONDS=str(MAX_LAG_SECONDS),
        VERITAS_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            teacher, admin, student, exam_id, attempt_id = _world(
                replication.database_url([primary], "veritas"), channel
            )
            views = Views(channel, teacher, admin, exam_id, attempt_id)
            assert {path.rsplit("/", 1)[1] for path in REPLICA_METHODS} == set(views.answers())

            # Keeping up: the replica serves them, and has everything written so far.
            wait_until(lambda: _replica_health(channel) == health_pb2.HealthCheckResponse.SERVING)
            before = _reads(metrics_port).get("replica", 0)
            wait_until(lambda: views.answers()["ListEvents"] == 1)
            assert _reads(metrics_port)["replica"] > before
            # Their audit rows are written on the primary all the same.
            audited, before = _audited_reads(primary), _reads(metrics_port)["replica"]
            views.answers()
            assert _reads(metrics_port)["replica"] > before
            assert _audited_reads(primary) == audited + len(AUDITED_READS)

            # Delayed: what is written now is missing from the standby for 30 s...
            standby.sql(f"ALTER SYSTEM SET recovery_min_apply_delay = '{APPLY_DELAY}'")
            standby.sql("SELECT pg_reload_conf()")
            written = _write_event_grade_and_review(channel, student, teacher, attempt_id)
            time.sleep(PROMISED_SECONDS + MARGIN_SECONDS - (time.monotonic() - written))
            assert (
                standby.sql(
                    f"SELECT score IS NULL FROM exam_attempts WHERE id = '{attempt_id}'", "veritas"
                )
                == "t"
            )
            # ... and every replica-read RPC has it already: it read the primary.
            assert views.answers() == {
                "GetExamAnalytics": True,
                "GetTeacherDashboard": True,
                "ListFlaggedAttempts": True,
                "GetAttemptMonitoring": True,
                "ListEvents": 2,
                "GetHighRiskSummary": True,
                "SearchAttempts": True,
            }
            assert _replica_health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING

            # Down: reads go on from the primary.
            standby.stop("immediate")
            primary_reads = _reads(metrics_port).get("primary", 0)
            assert views.answers()["ListEvents"] == 2
            assert _reads(metrics_port)["primary"] > primary_reads

            # Back, without the delay: reads return to it once it has caught up.
            standby.configure(recovery_min_apply_delay="0")
            (standby.data / "postgresql.auto.conf").write_text("")
            standby.start()
            wait_until(
                lambda: _replica_health(channel) == health_pb2.HealthCheckResponse.SERVING,
                timeout=120,
            )
            replica_reads = _reads(metrics_port)["replica"]
            assert views.answers()["SearchAttempts"] is True
            assert _reads(metrics_port)["replica"] > replica_reads

            # Tokens revoked on the primary while the standby has not replayed it: each
            # replica read answers UNAUTHENTICATED (its token is checked on the primary,
            # before it reads).
            standby.sql("SELECT pg_wal_replay_pause()")
            signed_out = [_signed_out(channel, who.email) for who in (teacher, admin)]
            unreplayed = "SELECT count(*) FROM auth_sessions WHERE revoked_at IS NOT NULL"
            assert primary.sql(unreplayed, "veritas") != standby.sql(unreplayed, "veritas")
            revoked = Views(channel, *signed_out, exam_id, attempt_id)
            for name, call in revoked.calls().items():
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            standby.sql("SELECT pg_wal_replay_resume()")
    finally:
        server.stop()


def _write_event_grade_and_review(channel, student, teacher, attempt_id: str) -> float:
    """An event, the submission, a grade and a violation review (which flags the
    attempt); when they were all written."""
    stream(channel, student.metadata, [[critical(attempt_id)]])
    submit(stubs(channel)[0], student, attempt_id)
    teach = teacher_pb2_grpc.TeacherServiceStub(channel)
    teach.GradeAttempt(
        teacher_pb2.GradeAttemptRequest(attempt_id=attempt_id, points=70),
        metadata=teacher.metadata,
    )
    teach.ReviewAttempt(
        teacher_pb2.ReviewAttemptRequest(
            attempt_id=attempt_id, outcome=common_pb2.REVIEW_OUTCOME_VIOLATION
        ),
        metadata=teacher.metadata,
    )
    return time.monotonic()
