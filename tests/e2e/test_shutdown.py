"""Shutdown with streams still open at the end of the grace (issue 10, item 15): they
get UNAVAILABLE, and everything the server writes to stderr stays JSON log lines (no
raw asyncio.CancelledError tracebacks after "stopped")."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from veritas.v1 import monitoring_pb2, monitoring_pb2_grpc

from tests.e2e.monitoring_helpers import event, scene
from tests.support import ServerProcess


def _agent_batches(attempt_id, keep_open_seconds):
    yield monitoring_pb2.StreamEventsRequest(events=[event(attempt_id)])
    time.sleep(keep_open_seconds)  # an agent that keeps its stream open past the grace


def _ends_with(call) -> grpc.StatusCode:
    try:
        for _ in call:
            pass
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_streams_cut_at_shutdown_get_unavailable_and_leave_no_traceback(
    channel, auth_stub, make_account, database_url
):
    world = scene(channel, auth_stub, make_account)
    process = ServerProcess(
        database_url, VERITAS_SHUTDOWN_GRACE_SECONDS="1", VERITAS_LOG_LEVEL="INFO"
    )
    try:
        with grpc.insecure_channel(process.address) as to_process:
            health = health_pb2_grpc.HealthStub(to_process).Watch(health_pb2.HealthCheckRequest())
            next(health)
            monitoring = monitoring_pb2_grpc.MonitoringServiceStub(to_process)
            # A watch waiting for its next alert is the stream grpc left running on
            # the loop after stop(), to be cancelled with a traceback when the loop ended.
            watch = monitoring.WatchExamAlerts(
                monitoring_pb2.WatchExamAlertsRequest(exam_id=world.exam_id),
                metadata=world.teacher.metadata,
            )
            agent = monitoring.StreamEvents.future(
                _agent_batches(world.attempt_id, 20), metadata=world.student.metadata
            )
            time.sleep(1.5)  # both streams are open on the server
            process.process.terminate()
            assert process.process.wait(timeout=30) == 0
            with ThreadPoolExecutor(1) as pool:
                assert pool.submit(_ends_with, watch).result(30) == grpc.StatusCode.UNAVAILABLE
            assert agent.exception(timeout=30).code() == grpc.StatusCode.UNAVAILABLE
        stderr = process.log()
    finally:
        process.stop()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert not [line for line in lines if not line.startswith("{")], stderr
    assert "CancelledError" not in stderr
    assert json.loads(lines[-1])["message"] == "stopped"


def test_a_sigterm_the_moment_the_banner_appears_stops_the_server_cleanly(database_url):
    # ServerProcess returns as soon as it reads the banner: the signal handlers must
    # already be in place, or SIGTERM kills the server (exit -15) instead of stopping it.
    for _ in range(3):
        assert ServerProcess(database_url).terminate() == 0
