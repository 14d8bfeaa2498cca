"""`veritas healthcheck`: grpc.health.v1 Check, for container and orchestrator probes.

Exit status 0 only when the server answers SERVING; 1 for anything else (NOT_SERVING, an
unknown service, no answer, a refused handshake, a bad option), with one line on stderr
saying why. Docker's HEALTHCHECK reserves status 2, so every failure is 1.

Without options it probes the server this environment configures: VERITAS_LISTEN's port
on the loopback address, over TLS when VERITAS_TLS_CERT_FILE is set. Its client side comes
from the options, else from VERITAS_HEALTHCHECK_TLS_CA, VERITAS_HEALTHCHECK_TLS_CERT,
VERITAS_HEALTHCHECK_TLS_KEY and VERITAS_HEALTHCHECK_TLS_SERVER_NAME; probing this
environment's TLS server without a server name, it asks for the first DNS name of
VERITAS_TLS_CERT_FILE (the loopback address is seldom in a real certificate).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from veritas_grpc.cli_tls import add_client_tls_arguments, channel_credentials
from veritas_grpc.config import ConfigError, Settings, load_settings

EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1
# The server's wildcard addresses are reached on this machine through loopback.
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class ProbeError(Exception):
    """The probe could not be made (bad options, unreadable files): the one line to print."""


def local_target(settings: Settings) -> str:
    host, port = settings.host_port
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _first_dns_name(certificate_file: Path) -> str | None:
    try:
        certificate = x509.load_pem_x509_certificate(certificate_file.read_bytes())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, ValueError, x509.ExtensionNotFound) as error:
        raise ProbeError(f"cannot read the DNS names of {certificate_file}: {error}") from None
    dns_names = names.value.get_values_for_type(x509.DNSName)
    return dns_names[0] if dns_names else None


def with_environment_defaults(args: argparse.Namespace, settings: Settings) -> argparse.Namespace:
    """The options given, the VERITAS_HEALTHCHECK_TLS_* settings for those that are not."""
    given = vars(args)
    defaults = {
        "tls_ca": settings.healthcheck_tls_ca,
        "tls_cert": settings.healthcheck_tls_cert,
        "tls_key": settings.healthcheck_tls_key,
        "tls_server_name": settings.healthcheck_tls_server_name,
    }
    merged = {
        name: given[name] if given[name] is not None else value for name, value in defaults.items()
    }
    if (
        merged["tls_server_name"] is None
        and args.target is None
        and settings.tls_cert_file is not None
    ):
        merged["tls_server_name"] = _first_dns_name(settings.tls_cert_file)
    paths = {name: str(value) for name, value in merged.items() if isinstance(value, Path)}
    return argparse.Namespace(**{**given, **merged, **paths})


def _credentials(args: argparse.Namespace, settings: Settings) -> grpc.ChannelCredentials | None:
    """The client TLS options (cli_tls), else TLS checked by the system's trusted roots
    when asked for or when this environment's server serves TLS; None: plaintext."""
    try:
        given = channel_credentials(args)
    except SystemExit as refusal:  # an unreadable file, half a client certificate
        raise ProbeError(str(refusal)) from None
    if given is not None:
        return given
    if args.tls or args.tls_server_name or (args.target is None and settings.serves_tls):
        return grpc.ssl_channel_credentials()
    return None


def _channel(
    target: str, credentials: grpc.ChannelCredentials | None, server_name: str | None
) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, credentials, options=options)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def probe(args: argparse.Namespace, settings: Settings) -> tuple[bool, str]:
    """(serving, the line that says so or why not)."""
    args = with_environment_defaults(args, settings)
    target = args.target or local_target(settings)
    credentials = _credentials(args, settings)
    service = f" service {args.service!r}" if args.service else ""
    with _channel(target, credentials, args.tls_server_name) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            details = error.details() or ""  # type: ignore[attr-defined]
            return False, _one_line(f"{target}{service}: {code.name}: {details}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    return answer.status == health_pb2.HealthCheckResponse.SERVING, f"{target}{service}: {status}"


def cmd_healthcheck(args: argparse.Namespace) -> int:
    try:
        serving, line = probe(args, load_settings(require_secret=False))
    except (ConfigError, ProbeError) as error:
        serving, line = False, _one_line(f"healthcheck not made: {error}")
    print(line, file=sys.stdout if serving else sys.stderr)
    return EXIT_HEALTHY if serving else EXIT_UNHEALTHY


def add_healthcheck_command(commands: Any) -> None:
    check = commands.add_parser(
        "healthcheck",
        help="exit 0 only when the server's grpc.health.v1 answers SERVING (for probes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "--target", help="host:port to probe (default: VERITAS_LISTEN's port on loopback)"
    )
    check.add_argument(
        "--service", default="", help="a service name to ask about (default: the whole server)"
    )
    check.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)"
    )
    check.add_argument(
        "--tls",
        action="store_true",
        help="use TLS (implied by the other --tls options, and by VERITAS_TLS_CERT_FILE "
        "when --target is not given)",
    )
    add_client_tls_arguments(check)
    check.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the server's certificate must carry, when the target's is another",
    )
    check.set_defaults(handler=cmd_healthcheck)
