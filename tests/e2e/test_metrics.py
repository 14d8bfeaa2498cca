"""/metrics around a story: the counters move by exactly what the story did, in one
server process and summed over two (VERITAS_PROCESSES=2)."""

from __future__ import annotations

import json
import time
import uuid

import grpc
import pytest
from prometheus_client.mmap_dict import MmapedDict
from veritas.v1 import auth_pb2, auth_pb2_grpc, student_pb2_grpc

from tests.e2e.agent_helpers import wait_until
from tests.e2e.exam_helpers import rpc_error, submit
from tests.e2e.metrics_helpers import free_port, grpc_key, key, moved, scrape
from tests.e2e.monitoring_helpers import event, scene, stream
from tests.support import PASSWORD, ServerProcess, unique_email

LOGIN = ("AuthService", "Login", "unary")
HANDLED = "grpc_server_handled_total"


@pytest.fixture(scope="module")
def metered(database_url):
    """A server process of its own, so that only this module's calls reach its metrics."""
    metrics_address = f"127.0.0.1:{free_port()}"
    process = ServerProcess(database_url, VERITAS_METRICS_LISTEN=metrics_address)
    process.metrics_address = metrics_address  # type: ignore[attr-defined]
    yield process
    process.stop()


def test_the_counters_move_by_exactly_what_a_story_did(metered, channel, auth_stub, make_account):
    # Made through the suite's own server: none of it reaches the metered one.
    world = scene(channel, auth_stub, make_account)
    first, second = event(world.attempt_id), event(world.attempt_id)
    broken = event(world.attempt_id, data_json="{not json")
    before = scrape(metered.metrics_address)

    with grpc.insecure_channel(metered.address) as metered_channel:
        auth = auth_pb2_grpc.AuthServiceStub(metered_channel)
        auth.Login(auth_pb2.LoginRequest(email=world.student.email, password=PASSWORD))
        refused = rpc_error(
            auth.Login, auth_pb2.LoginRequest(email=world.student.email, password="wrong one")
        )
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = stream(metered_channel, world.student.metadata, [[first, second], [first, broken]])
        assert (answer.accepted_count, answer.duplicate_count, answer.rejected_count) == (2, 1, 1)
        submit(
            student_pb2_grpc.StudentServiceStub(metered_channel), world.student, world.attempt_id
        )
    after = scrape(metered.metrics_address)

    assert moved(before, after, HANDLED) == {
        grpc_key(HANDLED, *LOGIN, grpc_code="OK"): 1,
        grpc_key(HANDLED, *LOGIN, grpc_code="UNAUTHENTICATED"): 1,
        grpc_key(HANDLED, "MonitoringService", "StreamEvents", "client_stream", grpc_code="OK"): 1,
        grpc_key(HANDLED, "StudentService", "SubmitAttempt", "unary", grpc_code="OK"): 1,
    }
    assert moved(before, after, "grpc_server_started_total") == {
        grpc_key("grpc_server_started_total", *LOGIN): 2,
        grpc_key(
            "grpc_server_started_total", "MonitoringService", "StreamEvents", "client_stream"
        ): 1,
        grpc_key("grpc_server_started_total", "StudentService", "SubmitAttempt", "unary"): 1,
    }
    assert (
        moved(before, after, "grpc_server_handling_seconds_count")[
            grpc_key("grpc_server_handling_seconds_count", *LOGIN)
        ]
        == 2
    )
    assert moved(before, after, "grpc_server_msg_received_total") == {
        grpc_key(
            "grpc_server_msg_received_total", "MonitoringService", "StreamEvents", "client_stream"
        ): 2
    }
    assert moved(before, after, "veritas_ingest_events_total") == {
        key("veritas_ingest_events_total", outcome="accepted"): 2,
        key("veritas_ingest_events_total", outcome="duplicate"): 1,
        key("veritas_ingest_events_total", outcome="rejected"): 1,
    }
    assert moved(before, after, "veritas_ingest_rejections_total") == {
        key("veritas_ingest_rejections_total", kind="invalid"): 1
    }
    assert moved(before, after, "veritas_sign_in_failures_total") == {
        key("veritas_sign_in_failures_total", reason="bad_password"): 1
    }
    # The writer stored both messages' valid events: three rows, the repeat among them.
    assert moved(before, after, "veritas_writer_batch_rows_sum") == {
        key("veritas_writer_batch_rows_sum"): 3
    }
    assert after[key("veritas_agent_streams_open")] == 0
    assert after[key("veritas_health_serving")] == 1
    assert after[key("veritas_writer_queue_capacity")] > 0
    # The submit queued the attempt's analysis; the queue is read from the database.
    assert after[key("veritas_analysis_queue_jobs", state="pending")] >= 1
    assert key("veritas_analysis_queue_oldest_pending_age_seconds") in after


def test_a_failed_sign_in_by_lockout_is_counted_with_its_scope(database_url):
    """Two failures lock the (account, address) bucket: one lockout, and the refusal
    that follows counts as a failure of its own kind."""
    metrics_address = f"127.0.0.1:{free_port()}"
    process = ServerProcess(
        database_url,
        VERITAS_METRICS_LISTEN=metrics_address,
        VERITAS_LOGIN_MAX_FAILURES="2",
    )
    try:
        email = unique_email("locked")
        with grpc.insecure_channel(process.address) as opened:
            auth = auth_pb2_grpc.AuthServiceStub(opened)
            for _ in range(2):
                rpc_error(auth.Login, auth_pb2.LoginRequest(email=email, password="wrong one"))
            locked = rpc_error(auth.Login, auth_pb2.LoginRequest(email=email, password="x"))
            assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # An aborted call's status reaches the client before the interceptors around the
        # abort have unwound and counted it: wait for the count, not for the answer.
        refused = grpc_key(HANDLED, *LOGIN, grpc_code="RESOURCE_EXHAUSTED")
        after = wait_until(lambda: _scrape_showing(metrics_address, refused))
    finally:
        process.stop()
    assert after[key("veritas_sign_in_failures_total", reason="unknown_email")] == 2
    assert after[key("veritas_sign_in_failures_total", reason="locked")] == 1
    assert after[key("veritas_sign_in_lockouts_total", scope="account_address")] == 1
    assert after[refused] == 1


def _scrape_showing(address: str, wanted) -> dict | None:
    found = scrape(address)
    return found if wanted in found else None


def _logins_by_process(directory) -> dict[str, float]:
    """Each process's own count of refused sign-ins, from the file it writes."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        for encoded, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(encoded)
            if sample == HANDLED and labels.get("grpc_method") == "Login":
                counts[path.stem] = counts.get(path.stem, 0) + value
    return counts


def test_one_scrape_shows_the_sum_of_every_process(database_url, tmp_path):
    metrics_address = f"127.0.0.1:{free_port()}"
    process = ServerProcess(
        database_url,
        VERITAS_PROCESSES="2",
        VERITAS_LISTEN=f"127.0.0.1:{free_port()}",
        VERITAS_METRICS_LISTEN=metrics_address,
        VERITAS_DATA_DIR=str(tmp_path),
    )
    calls = 0
    try:
        # The port is shared (SO_REUSEPORT): each new connection goes to either process.
        # Calls until both have answered some (the second may still be starting).
        deadline = time.monotonic() + 60
        while len(_logins_by_process(tmp_path / "metrics")) < 2 or calls < 20:
            assert time.monotonic() < deadline, "the second process answered nothing"
            with grpc.insecure_channel(
                process.address, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as opened:
                rpc_error(
                    auth_pb2_grpc.AuthServiceStub(opened).Login,
                    auth_pb2.LoginRequest(email=f"{uuid.uuid4().hex}@x.edu", password="wrong"),
                )
            calls += 1
        # A call is counted as it ends, which may be just after its answer reached us.
        wait_until(lambda: sum(_logins_by_process(tmp_path / "metrics").values()) == calls)
        by_process = _logins_by_process(tmp_path / "metrics")
        after = scrape(metrics_address)
    finally:
        # SIGTERM: the first process stops the second (a SIGKILL would leave it running).
        process.terminate()
    assert len(by_process) == 2 and all(count > 0 for count in by_process.values())
    assert sum(by_process.values()) == calls
    assert after[grpc_key(HANDLED, *LOGIN, grpc_code="UNAUTHENTICATED")] == calls
    assert after[key("veritas_sign_in_failures_total", reason="unknown_email")] == calls
    # Both processes serve; the health gauge is the lowest of them.
    assert after[key("veritas_health_serving")] == 1
