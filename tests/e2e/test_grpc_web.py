"""Browser frontends through Envoy: deploy/envoy.yaml in front of a real server, spoken
to as a browser's grpc-web client would (HTTP/1.1 POSTs, framed messages, trailers in
the body, CORS)."""

from __future__ import annotations

import http.client
import struct
from collections.abc import Iterator

import pytest
from veritas.v1 import auth_pb2, monitoring_pb2

from tests.e2e.conftest import register_and_login
from tests.e2e.envoy_proxy import run_envoy
from tests.e2e.monitoring_helpers import critical, event, scene, stream
from tests.support import PASSWORD, ServerThread, make_settings
from veritas_grpc.domain.client_address import parse_trusted_proxies

FRONTEND = "http://localhost:5173"
OK, UNAUTHENTICATED = 0, 16


@pytest.fixture(scope="module")
def envoy(server, tmp_path_factory) -> Iterator[int]:
    """Envoy with the shipped config, its ports pointed at this test's server."""
    with run_envoy(server.address, tmp_path_factory.mktemp("envoy")) as port:
        yield port


def _frame(message) -> bytes:
    payload = message.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload


def _read_frames(response: http.client.HTTPResponse) -> Iterator[tuple[int, bytes]]:
    """grpc-web frames as they arrive: (flag, bytes); flag 0x80 carries the trailers."""
    while header := response.read(5):
        flag, length = struct.unpack(">BI", header)
        yield flag, response.read(length)


def _post(port: int, method: str, message, token: str = "") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "origin": FRONTEND,
    }
    if token:
        headers["authorization"] = f"Bearer {token}"
    connection.request("POST", f"/veritas.v1.{method}", body=_frame(message), headers=headers)
    return connection.getresponse()


def _unary(port: int, method: str, message, response_type, token: str = ""):
    """(grpc-status, the response message or None, the HTTP response)."""
    response = _post(port, method, message, token)
    reply, trailers = None, {}
    for flag, data in _read_frames(response):
        if flag & 0x80:
            for line in data.decode().strip().split("\r\n"):
                name, _, value = line.partition(":")
                trailers[name.strip().lower()] = value.strip()
        else:
            reply = response_type.FromString(data)
    status = trailers.get("grpc-status") or response.getheader("grpc-status")
    return int(status), reply, response


def test_a_frontend_signs_in_and_reads_its_user(envoy, auth_stub):
    student = register_and_login(auth_stub)
    status, login, response = _unary(
        envoy,
        "AuthService/Login",
        auth_pb2.LoginRequest(email=student.email, password=PASSWORD),
        auth_pb2.LoginResponse,
    )
    assert status == OK and login.user.email == student.email
    assert response.getheader("access-control-allow-origin") == FRONTEND
    status, me, _ = _unary(
        envoy,
        "AuthService/GetCurrentUser",
        auth_pb2.GetCurrentUserRequest(),
        auth_pb2.GetCurrentUserResponse,
        token=login.tokens.access_token,
    )
    assert status == OK and me.user.id == student.user_id


def test_errors_reach_the_browser_with_their_status(envoy):
    status, reply, response = _unary(
        envoy,
        "AuthService/GetCurrentUser",
        auth_pb2.GetCurrentUserRequest(),
        auth_pb2.GetCurrentUserResponse,
    )
    assert status == UNAUTHENTICATED and reply is None
    exposed = response.getheader("access-control-expose-headers", "")
    assert "grpc-status" in exposed and "grpc-message" in exposed


def _preflight(port: int, origin: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "OPTIONS",
        "/veritas.v1.AuthService/Login",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,authorization",
        },
    )
    return connection.getresponse()


def test_cors_preflight_admits_the_frontend_origin_only(envoy):
    allowed = _preflight(envoy, FRONTEND)
    assert allowed.getheader("access-control-allow-origin") == FRONTEND
    assert "authorization" in allowed.getheader("access-control-allow-headers", "")
    assert (
        _preflight(envoy, "https://elsewhere.example").getheader("access-control-allow-origin")
        is None
    )


def test_a_foreign_preflight_is_answered_by_envoy_not_the_server(envoy):
    """Forwarded, an OPTIONS request reaches grpcio, which answers it as a failed call
    (HTTP 200, grpc-status 13) and logs a line of its own."""
    refused = _preflight(envoy, "https://elsewhere.example")
    refused.read()
    assert refused.getheader("grpc-status") is None
    assert not refused.getheader("content-type", "").startswith("application/grpc")
    assert refused.getheader("access-control-allow-origin") is None


def test_only_the_product_services_are_routed(envoy):
    connection = http.client.HTTPConnection("127.0.0.1", envoy, timeout=10)
    connection.request(
        "POST",
        "/grpc.health.v1.Health/Check",
        body=b"\x00\x00\x00\x00\x00",
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert connection.getresponse().status == 404


def test_a_teacher_watches_an_exam_live_through_envoy(envoy, channel, auth_stub, make_account):
    world = scene(channel, auth_stub, make_account)
    response = _post(
        envoy,
        "MonitoringService/WatchExamAlerts",
        monitoring_pb2.WatchExamAlertsRequest(exam_id=world.exam_id),
        token=world.teacher.access_token,
    )
    frames = _read_frames(response)
    flag, first = next(frames)
    assert flag == 0 and monitoring_pb2.WatchExamAlertsResponse.FromString(first).HasField(
        "heartbeat"
    )
    alert = critical(world.attempt_id)
    assert (
        stream(channel, world.student.metadata, [[event(world.attempt_id), alert]]).accepted_count
        == 2
    )
    for flag, data in frames:
        message = monitoring_pb2.WatchExamAlertsResponse.FromString(data)
        if flag == 0 and message.HasField("alert"):
            break
    assert message.alert.event_id == alert.event_id
    response.close()


# Sign-in throttles behind Envoy --------------------------------------------------------

RESOURCE_EXHAUSTED = 8


@pytest.fixture(scope="module")
def proxied(database_url, tmp_path_factory) -> Iterator[int]:
    """A server that trusts Envoy (127.0.0.1) with small sign-in limits, and its Envoy."""
    settings = make_settings(
        login_max_failures=3,
        login_max_failures_per_account=50,
        login_max_failures_per_address=100,
        trusted_proxies=parse_trusted_proxies("127.0.0.1"),
    )
    server = ServerThread(settings, database_url)
    try:
        with run_envoy(server.address, tmp_path_factory.mktemp("envoy-proxied")) as port:
            yield port
    finally:
        server.stop()


def _login_from(port: int, browser: str, email: str, password: str, forwarded: str) -> int:
    """A browser at `browser` (a loopback address) signs in through Envoy, sending an
    x-forwarded-for of its own choosing; the grpc-status."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(browser, 0)
    )
    message = auth_pb2.LoginRequest(email=email, password=password)
    headers = {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "origin": FRONTEND,
        "x-forwarded-for": forwarded,
    }
    connection.request("POST", "/veritas.v1.AuthService/Login", _frame(message), headers)
    response = connection.getresponse()
    trailers = b"".join(data for flag, data in _read_frames(response) if flag & 0x80)
    connection.close()
    for line in trailers.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "grpc-status":
            return int(value)
    return int(response.getheader("grpc-status"))


def test_sign_in_through_envoy_is_throttled_by_the_browsers_address(proxied, auth_stub):
    """Envoy appends the browser's address to x-forwarded-for and the server, trusting
    Envoy, counts by it: a new forged address in every request gets the attacker no new
    bucket, and naming another browser's address puts no failure in that browser's."""
    victim = register_and_login(auth_stub).email
    attacker, owner = "127.0.0.20", "127.0.0.21"
    for n in range(3):
        forged = f"198.51.100.{n + 1}"
        assert _login_from(proxied, attacker, victim, "wrong!", forged) == UNAUTHENTICATED
    assert _login_from(proxied, attacker, victim, PASSWORD, "198.51.100.9") == RESOURCE_EXHAUSTED
    # The owner's browser, even if the attacker's forged header had named it, gets in.
    assert _login_from(proxied, owner, victim, PASSWORD, attacker) == OK
