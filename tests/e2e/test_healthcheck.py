"""`veritas healthcheck` as probes run it (a process, its exit status and its one line)
against real servers: plaintext, TLS and mTLS Veritas servers, a port nobody listens on,
and a grpc health service that answers NOT_SERVING."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.e2e.envoy_proxy import free_port
from tests.support import ServerThread, make_settings
from veritas_grpc import cli, cli_health, cli_tls


@pytest.fixture
def healthcheck(monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """The command, in this process (its start-up is most of a probe's time), in a
    clean environment: only the VERITAS_* variables given."""

    def run(*options: str, **env: str) -> subprocess.CompletedProcess[str]:
        for name in [name for name in os.environ if name.startswith("VERITAS_")]:
            monkeypatch.delenv(name)
        for name, value in {"VERITAS_ENV": "test", **env}.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        status = cli.main(["healthcheck", *options])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(options, status, out, err)

    return run


def test_the_command_exits_0_when_serving(server):
    """As probes run it: a process, judged by its exit status (the failures are in-process
    below, where the start-up of a process is not paid for each)."""
    done = subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", "healthcheck", "--target", server.address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def port_of(address: str) -> str:
    return address.rsplit(":", 1)[1]


def test_a_serving_server_passes(healthcheck, server):
    done = healthcheck("--target", server.address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{server.address}: SERVING"


def test_the_default_target_is_veritas_listen_on_loopback(healthcheck, server):
    done = healthcheck(VERITAS_LISTEN=f"0.0.0.0:{port_of(server.address)}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"127.0.0.1:{port_of(server.address)}: SERVING"


def test_a_service_the_server_knows_passes_and_an_unknown_one_fails(healthcheck, server):
    known = healthcheck("--target", server.address, "--service", "veritas.v1.AuthService")
    assert known.returncode == 0, known.stderr
    unknown = healthcheck("--target", server.address, "--service", "veritas.v1.NoSuchService")
    assert unknown.returncode == 1
    assert "NOT_FOUND" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1


def test_nothing_listening_fails_with_one_line(healthcheck):
    done = healthcheck("--target", f"127.0.0.1:{free_port()}", "--timeout", "10")
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "UNAVAILABLE" in line


@pytest.fixture
def not_serving() -> Iterator[str]:
    """grpcio's own health service, told that the server is NOT_SERVING."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_not_serving_fails(healthcheck, not_serving):
    done = healthcheck("--target", not_serving)
    assert done.returncode == 1
    assert done.stderr.strip() == f"{not_serving}: NOT_SERVING"


def test_unreadable_options_fail_with_one_line(healthcheck, server, tmp_path):
    done = healthcheck("--target", server.address, "--tls-ca", str(tmp_path / "missing.pem"))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert "missing.pem" in line


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("healthcheck-tls")
    cli_tls.write_dev_certs(directory)
    return directory


def tls_server(certs: Path, database_url: str, mtls: bool) -> ServerThread:
    settings = make_settings(
        tls_cert_file=certs / cli_tls.SERVER_CERT_FILE,
        tls_key_file=certs / cli_tls.SERVER_KEY_FILE,
        tls_client_ca_file=certs / cli_tls.CA_FILE if mtls else None,
    )
    return ServerThread(settings, database_url)


def test_tls_with_the_ca_passes_and_plaintext_fails(healthcheck, certs, database_url):
    running = tls_server(certs, database_url, mtls=False)
    try:
        target = f"localhost:{port_of(running.address)}"
        plaintext = healthcheck("--target", target)
        assert plaintext.returncode == 1
        assert "UNAVAILABLE" in plaintext.stderr
        ca = str(certs / cli_tls.CA_FILE)
        done = healthcheck("--target", target, "--tls-ca", ca)
        assert done.returncode == 0, done.stderr
        # The server this environment configures: TLS because it serves TLS, checked by
        # the default roots (grpc reads them once per process, so in a process of its own).
        implied = subprocess.run(
            [sys.executable, "-m", "veritas_grpc.cli", "healthcheck"],
            env={
                **os.environ,
                "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": ca,
                "VERITAS_ENV": "test",
                "VERITAS_LISTEN": f"0.0.0.0:{port_of(running.address)}",
                "VERITAS_TLS_CERT_FILE": str(certs / cli_tls.SERVER_CERT_FILE),
                "VERITAS_TLS_KEY_FILE": str(certs / cli_tls.SERVER_KEY_FILE),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert implied.returncode == 0, implied.stderr
    finally:
        running.stop()


def test_mtls_needs_the_client_certificate(healthcheck, certs, database_url):
    running = tls_server(certs, database_url, mtls=True)
    try:
        target = f"localhost:{port_of(running.address)}"
        ca = str(certs / cli_tls.CA_FILE)
        without = healthcheck("--target", target, "--tls-ca", ca)
        assert without.returncode == 1
        assert len(without.stderr.splitlines()) == 1
        client = ("--tls-cert", str(certs / cli_tls.CLIENT_CERT_FILE))
        key = ("--tls-key", str(certs / cli_tls.CLIENT_KEY_FILE))
        done = healthcheck("--target", target, "--tls-ca", ca, *client, *key)
        assert done.returncode == 0, done.stderr
    finally:
        running.stop()


def test_mtls_from_the_environment_alone(healthcheck, certs, database_url):
    """As the image's HEALTHCHECK runs it: no options, the server's own settings and the
    VERITAS_HEALTHCHECK_TLS_* ones; an option still overrides its variable."""
    running = tls_server(certs, database_url, mtls=True)
    try:
        env = {
            "VERITAS_LISTEN": f"0.0.0.0:{port_of(running.address)}",
            "VERITAS_TLS_CERT_FILE": str(certs / cli_tls.SERVER_CERT_FILE),
            "VERITAS_TLS_KEY_FILE": str(certs / cli_tls.SERVER_KEY_FILE),
            "VERITAS_TLS_CLIENT_CA_FILE": str(certs / cli_tls.CA_FILE),
            "VERITAS_HEALTHCHECK_TLS_CA": str(certs / cli_tls.CA_FILE),
            "VERITAS_HEALTHCHECK_TLS_CERT": str(certs / cli_tls.CLIENT_CERT_FILE),
            "VERITAS_HEALTHCHECK_TLS_KEY": str(certs / cli_tls.CLIENT_KEY_FILE),
        }
        done = healthcheck(**env)
        assert done.returncode == 0, done.stderr
        wrong_name = healthcheck("--tls-server-name", "elsewhere.example", **env)
        assert wrong_name.returncode == 1
        named = healthcheck(**env, VERITAS_HEALTHCHECK_TLS_SERVER_NAME="elsewhere.example")
        assert named.returncode == 1
    finally:
        running.stop()


def test_the_default_server_name_is_the_certificates_first_dns_name(certs):
    settings = make_settings(
        tls_cert_file=certs / cli_tls.SERVER_CERT_FILE,
        tls_key_file=certs / cli_tls.SERVER_KEY_FILE,
    )
    args = cli.build_parser().parse_args(["healthcheck"])
    assert cli_health.with_environment_defaults(args, settings).tls_server_name == "localhost"
    args = cli.build_parser().parse_args(["healthcheck", "--target", "127.0.0.1:1"])
    assert cli_health.with_environment_defaults(args, settings).tls_server_name is None
