"""Several server processes on one database, many open streams, shutdown, outages."""

import asyncio
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from veritas.v1 import auth_pb2, auth_pb2_grpc, common_pb2, student_pb2, teacher_pb2

from tests.e2e.conftest import register_and_login
from tests.e2e.exam_helpers import stubs
from tests.support import (
    PASSWORD,
    TEST_SECRET,
    ServerProcess,
    ServerThread,
    bearer,
    make_settings,
    unique_email,
    unique_enrollment,
)
from veritas_grpc.db import migrate
from veritas_grpc.health import LIVENESS
from veritas_grpc.services.demo import DEMO_ACCOUNTS, DEMO_PASSWORD

GET_ME = auth_pb2.GetCurrentUserRequest()
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def second_process(database_url):
    process = ServerProcess(database_url)
    yield process
    process.stop()


def test_a_token_revoked_in_one_process_is_refused_by_another(auth_stub, second_process):
    student = register_and_login(auth_stub)
    with grpc.insecure_channel(second_process.address) as channel:
        other = auth_pb2_grpc.AuthServiceStub(channel)
        assert other.GetCurrentUser(GET_ME, metadata=student.metadata).user.id == student.user_id
        auth_stub.Logout(auth_pb2.LogoutRequest(), metadata=student.metadata)
        with pytest.raises(grpc.RpcError) as error:
            other.GetCurrentUser(GET_ME, metadata=student.metadata)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _open_watch_streams(address, streams, channels):
    """Open `streams` health Watch streams over `channels` connections; keep them open."""
    opened = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    calls = [
        health_pb2_grpc.HealthStub(opened[i % channels]).Watch(health_pb2.HealthCheckRequest())
        for i in range(streams)
    ]
    first = await asyncio.wait_for(asyncio.gather(*(call.read() for call in calls)), timeout=60)
    return opened, calls, first


def test_a_thousand_open_streams_with_a_bounded_number_of_threads(second_process):
    threads_before = second_process.thread_count()

    async def scenario():
        opened, calls, first = await _open_watch_streams(second_process.address, 1000, 10)
        threads_during = second_process.thread_count()
        # The server still answers ordinary calls while the streams stay open.
        async with grpc.aio.insecure_channel(second_process.address) as extra:
            health = health_pb2_grpc.HealthStub(extra)
            check = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        still_open = sum(1 for call in calls if not call.done())
        for call in calls:
            call.cancel()
        for channel in opened:
            await channel.close()
        return first, threads_during, check, still_open

    first, threads_during, check, still_open = asyncio.run(scenario())
    assert len(first) == 1000 and all(message.status == SERVING for message in first)
    assert still_open == 1000
    assert check.status == SERVING
    # One event loop holds the streams: the thread count does not follow the stream count.
    assert threads_during <= threads_before + 4, (threads_before, threads_during)
    assert threads_during < 64


def test_sigterm_lets_in_flight_calls_finish_and_tells_watchers(database_url):
    # A slow bcrypt cost makes Login take long enough to be in flight at SIGTERM.
    process = ServerProcess(
        database_url, VERITAS_BCRYPT_ROUNDS="13", VERITAS_SHUTDOWN_GRACE_SECONDS="10"
    )
    try:
        email = unique_email("slow")
        with grpc.insecure_channel(process.address) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            stub.Register(
                auth_pb2.RegisterRequest(
                    email=email,
                    password=PASSWORD,
                    full_name="Slow",
                    enrollment_id=unique_enrollment(),
                )
            )
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert next(watch).status == SERVING
            live = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=LIVENESS)
            )
            assert next(live).status == SERVING
            login = stub.Login.future(auth_pb2.LoginRequest(email=email, password=PASSWORD))
            time.sleep(0.1)
            process.process.terminate()
            response = login.result(timeout=30)
            assert response.tokens.access_token
            assert next(watch).status == NOT_SERVING
            assert next(live).status == NOT_SERVING
        assert process.process.wait(timeout=30) == 0
    finally:
        process.stop()


def test_health_is_not_serving_while_the_database_is_unreachable():
    unreachable = "postgresql+psycopg2://nobody@127.0.0.1:9/veritas?connect_timeout=1"
    server = ServerThread(make_settings(), unreachable)
    try:
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "veritas.v1.AuthService"):
                status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
                assert status == NOT_SERVING
            # What the liveness probe asks: a database outage restarts no pod.
            live = health.Check(health_pb2.HealthCheckRequest(service=LIVENESS)).status
            assert live == SERVING
            with pytest.raises(grpc.RpcError) as error:
                auth_pb2_grpc.AuthServiceStub(channel).Login(
                    auth_pb2.LoginRequest(email="a@example.edu", password=PASSWORD), timeout=30
                )
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "127.0.0.1:9" not in error.value.details()
    finally:
        server.stop()


def _veritas(database_url, *args, stdin="", **env):
    """Run the `veritas` command with nothing from this environment but the database."""
    return subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", *args],
        input=stdin,
        env={"VERITAS_DATABASE_URL": database_url, "VERITAS_BCRYPT_ROUNDS": "4", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_user_reads_the_password_from_stdin_and_the_teacher_can_log_in(
    database_url, auth_stub
):
    email = unique_email("teacher")
    result = _veritas(
        database_url,
        *("create-user", "--role", "teacher", "--email", email, "--full-name", "Grace Teacher"),
        stdin=PASSWORD + "\n",
        VERITAS_JWT_SECRET=TEST_SECRET,  # the server's: the audit row is sealed with it
    )
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    response = auth_stub.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
    assert response.user.role == common_pb2.ROLE_TEACHER
    me = auth_stub.GetCurrentUser(GET_ME, metadata=bearer(response.tokens.access_token))
    assert me.user.full_name == "Grace Teacher"


def test_create_user_without_the_servers_secret_writes_nothing_and_says_why(database_url):
    email = unique_email("teacher")
    result = _veritas(
        database_url,
        *("create-user", "--role", "teacher", "--email", email, "--full-name", "No Secret"),
        stdin=PASSWORD + "\n",
    )
    assert result.returncode != 0
    assert "VERITAS_AUDIT_SECRET" in result.stderr and "Traceback" not in result.stderr


def test_create_user_refuses_a_weak_password(database_url):
    email = unique_email("admin")
    result = _veritas(
        database_url,
        *("create-user", "--role", "admin", "--email", email, "--full-name", "Weak"),
        stdin="short\n",
        VERITAS_JWT_SECRET=TEST_SECRET,
    )
    assert result.returncode == 1
    assert "password" in result.stderr


def test_the_server_refuses_to_start_with_a_weak_secret(database_url):
    result = _veritas(database_url, "serve", VERITAS_JWT_SECRET="secret")
    assert result.returncode == 2
    assert "VERITAS_JWT_SECRET" in result.stderr


def test_the_server_refuses_to_start_in_production_without_a_secret(database_url):
    result = _veritas(database_url, "serve")
    assert result.returncode == 2
    assert "VERITAS_JWT_SECRET must be set" in result.stderr


def test_demo_seeding_is_refused_in_production(database_url):
    result = _veritas(database_url, "seed-demo")
    assert result.returncode == 2
    assert "demo mode only" in result.stderr


def test_demo_seeding_is_repeatable_and_fills_the_dashboards(fresh_database, auth_stub, tmp_path):
    # A database of its own: the demo accounts have fixed e-mails.
    database_url = fresh_database("demo")
    migrate.upgrade(database_url)
    server = ServerThread(make_settings(), database_url)
    channel = grpc.insecure_channel(server.address)
    auth_stub = auth_pb2_grpc.AuthServiceStub(channel)
    for _ in range(2):
        result = _veritas(
            database_url, "seed-demo", VERITAS_ENV="demo", VERITAS_DATA_DIR=str(tmp_path)
        )
        assert result.returncode == 0, result.stderr
    tokens = {}
    for account in DEMO_ACCOUNTS:
        response = auth_stub.Login(
            auth_pb2.LoginRequest(email=account.email, password=DEMO_PASSWORD)
        )
        assert response.user.full_name == account.full_name
        tokens[account.email] = bearer(response.tokens.access_token)
    # The seed's dashboards show its data, once, however often it ran.
    student_stub, teacher_stub = stubs(channel)
    sam = student_stub.GetStudentDashboard(
        student_pb2.GetStudentDashboardRequest(), metadata=tokens["sam@veritas.demo"]
    )
    assert (
        sam.performance.finished_attempt_count,
        sam.performance.mean_score_percent,
    ) == (1, 82.0)
    assert sam.performance.mean_integrity_score == 0.92
    board = teacher_stub.GetTeacherDashboard(
        teacher_pb2.GetTeacherDashboardRequest(), metadata=tokens["teacher@veritas.demo"]
    )
    assert len(board.exams) == 2
    [quiz] = [o for o in board.exams if o.analytics.attempt_count]
    assert (quiz.analytics.attempt_count, quiz.analytics.pass_rate) == (2, 0.5)
    [flagged] = board.recent_flagged_attempts
    assert flagged.student_name == "Lee Learner"
    # The flagged attempt has the events its agents sent, for its monitoring view.
    view = teacher_stub.GetAttemptMonitoring(
        teacher_pb2.GetAttemptMonitoringRequest(attempt_id=flagged.attempt_id),
        metadata=tokens["teacher@veritas.demo"],
    )
    assert (view.attempt.event_count, view.attempt.anomaly_count) == (7, 5)
    assert len(view.timeline) == 7 and view.event_summary and view.behavior_analysis.llm_summary
    channel.close()
    server.stop()


def test_sweep_attempts_command(database_url):
    result = _veritas(database_url, "sweep-attempts")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("timed out ")


def test_purge_events_command(database_url):
    result = _veritas(database_url, "purge-events", "--older-than-days", "30")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dropped 0 daily event partitions")


def test_a_production_server_without_a_database_url_refuses_to_start(tmp_path):
    """Not a throwaway embedded PostgreSQL in the working directory on exam day."""
    result = subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", "serve"],
        env={"VERITAS_JWT_SECRET": TEST_SECRET, "VERITAS_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "production needs VERITAS_DATABASE_URL" in result.stderr
    assert not (tmp_path / "pg").exists()  # nothing was started


def test_a_sighup_to_a_plaintext_server_changes_nothing(database_url):
    """Operators send SIGHUP to rotate certificates; without TLS it must not end the
    server (the signal's default) but leave it serving."""
    import signal as signals

    server = ServerProcess(database_url)
    try:
        server.process.send_signal(signals.SIGHUP)
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(50):  # the signal is handled asynchronously: ask a few times
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                time.sleep(0.05)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert server.process.poll() is None
    finally:
        server.stop()
