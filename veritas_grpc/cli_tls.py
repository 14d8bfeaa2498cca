"""`veritas dev-cert DIR`: a local CA, a server certificate and a client certificate
for trying TLS and mTLS on one machine (README, "Transport security").

Not for production: the CA is made for this one use and its key is not kept (nothing
can be signed by it later, so trusting ca.pem trusts only these two certificates). Run
it again for new ones; --san adds names or addresses the server is reached by.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 365
LEAF_DAYS = 365
DEFAULT_SANS = ("localhost", "127.0.0.1", "::1")
# Written into DIR; the keys readable by their owner only.
CA_FILE = "ca.pem"
SERVER_CERT_FILE, SERVER_KEY_FILE = "server.pem", "server-key.pem"
CLIENT_CERT_FILE, CLIENT_KEY_FILE = "client.pem", "client-key.pem"
ALL_FILES = (CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE)
KEY_MODE, CERT_MODE = 0o600, 0o644


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Veritas development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: str, issuer: x509.Name, key: Any, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A little in the past: a client whose clock is slightly behind still accepts it.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def make_ca() -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        _builder("Veritas development CA", _name("Veritas development CA"), key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def issue(
    ca: Issued, common_name: str, sans: tuple[str, ...], usage: x509.ObjectIdentifier
) -> Issued:
    """A leaf certificate signed by `ca`: a server's (serverAuth, names in sans) or a
    client's (clientAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(common_name, ca.certificate.subject, key, LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        names = [_general_name(name) for name in dict.fromkeys(sans)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Created with its mode from the start: a key is never readable by others, not
    even for a moment."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    path.chmod(mode)  # whatever the umask took away from a certificate's mode


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_dev_certs(directory: Path, extra_sans: tuple[str, ...] = ()) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    server = issue(ca, "localhost", DEFAULT_SANS + extra_sans, ExtendedKeyUsageOID.SERVER_AUTH)
    client = issue(ca, "veritas-dev-client", (), ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(directory / CA_FILE, _pem(ca.certificate), CERT_MODE)
    _write(directory / SERVER_CERT_FILE, _pem(server.certificate), CERT_MODE)
    _write(directory / SERVER_KEY_FILE, _key_pem(server.key), KEY_MODE)
    _write(directory / CLIENT_CERT_FILE, _pem(client.certificate), CERT_MODE)
    _write(directory / CLIENT_KEY_FILE, _key_pem(client.key), KEY_MODE)


def _instructions(directory: Path) -> str:
    return "\n".join(
        [
            f"wrote a development CA and certificates to {directory}",
            "",
            "  Serve TLS:",
            f"    export VERITAS_TLS_CERT_FILE={directory / SERVER_CERT_FILE}",
            f"    export VERITAS_TLS_KEY_FILE={directory / SERVER_KEY_FILE}",
            "  and require client certificates (mTLS) too:",
            f"    export VERITAS_TLS_CLIENT_CA_FILE={directory / CA_FILE}",
            "",
            "  Connect:",
            f"    .venv/bin/grpcurl -cacert {directory / CA_FILE} localhost:50051 list",
            f"    .venv/bin/grpcurl -cacert {directory / CA_FILE} "
            f"-cert {directory / CLIENT_CERT_FILE} -key {directory / CLIENT_KEY_FILE} "
            "localhost:50051 list",
        ]
    )


def cmd_dev_cert(args: argparse.Namespace) -> int:
    directory = Path(args.directory).resolve()
    existing = [name for name in ALL_FILES if (directory / name).exists()]
    if existing and not args.force:
        raise SystemExit(
            f"veritas dev-cert: {directory} already has {', '.join(existing)} "
            "(--force replaces them)"
        )
    write_dev_certs(directory, tuple(args.san))
    print(_instructions(directory))
    return 0


def add_client_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """A client command's --tls-ca, --tls-cert and --tls-key (see channel_credentials)."""
    parser.add_argument(
        "--tls-ca",
        help="TLS instead of plaintext: the PEM CA certificates that signed the server's "
        "(with --tls-cert alone: the system's CAs)",
    )
    parser.add_argument("--tls-cert", help="a PEM client certificate, for mTLS (with --tls-key)")
    parser.add_argument("--tls-key", help="the PEM key of --tls-cert")


def channel_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials from add_client_tls_arguments' options; None: plaintext."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("--tls-cert and --tls-key go together")
    if args.tls_ca is None and args.tls_cert is None:
        return None
    try:
        files = [
            Path(f).read_bytes() if f else None for f in (args.tls_ca, args.tls_key, args.tls_cert)
        ]
    except OSError as error:
        raise SystemExit(f"cannot read {error.filename}: {error.strerror}") from None
    return grpc.ssl_channel_credentials(*files)


def add_tls_commands(commands: Any) -> None:
    dev_cert = commands.add_parser(
        "dev-cert",
        help="make a local CA, a server and a client certificate for trying TLS and mTLS",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev_cert.add_argument("directory", help="where to write the files (created if missing)")
    dev_cert.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="another DNS name or IP address for the server certificate (repeatable); "
        f"always: {', '.join(DEFAULT_SANS)}",
    )
    dev_cert.add_argument("--force", action="store_true", help="replace existing files")
    dev_cert.set_defaults(handler=cmd_dev_cert)
