"""The server's TLS credentials, re-read on request without a restart.

grpc asks a certificate-configuration fetcher at every new handshake
(grpc.dynamic_ssl_server_credentials): `reload()` (SIGHUP) reads and checks the files,
and the next handshakes get the new certificate, key and client CA. Connections already
open keep the one they were made with, so open streams are not dropped. A reload that
finds broken files keeps serving the previous certificate and says so in the log.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veritas_grpc.config import ConfigError, Settings

log = logging.getLogger("veritas.tls")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None


@dataclass(frozen=True)
class TlsMaterial:
    """The files' contents, checked: a chain, the key of its first certificate, and the
    client CA's certificates (mTLS) or None."""

    chain: bytes
    key: bytes
    client_ca: bytes | None

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.chain)], root_certificates=self.client_ca
        )


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{setting}: cannot read {path}: {error.strerror}") from None


def _certificates(data: bytes, path: Path, setting: str) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        found = []
    if not found:
        raise ConfigError(f"{setting}: {path} holds no PEM certificate")
    return found


def read_material(files: TlsFiles) -> TlsMaterial:
    """Read and check the files; a ConfigError says which one is wrong and how."""
    chain = _read(files.cert, "VERITAS_TLS_CERT_FILE")
    leaf = _certificates(chain, files.cert, "VERITAS_TLS_CERT_FILE")[0]
    key = _read(files.key, "VERITAS_TLS_KEY_FILE")
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"VERITAS_TLS_KEY_FILE: {files.key} holds no unencrypted PEM private key"
        ) from None
    if private_key.public_key() != leaf.public_key():
        raise ConfigError(
            f"VERITAS_TLS_KEY_FILE: {files.key} is not the key of the certificate in {files.cert}"
        )
    client_ca = None
    if files.client_ca is not None:
        client_ca = _read(files.client_ca, "VERITAS_TLS_CLIENT_CA_FILE")
        _certificates(client_ca, files.client_ca, "VERITAS_TLS_CLIENT_CA_FILE")
    return TlsMaterial(chain, key, client_ca)


class ServerTls:
    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._material = read_material(files)
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()

    @property
    def requires_client_certificates(self) -> bool:
        return self.files.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._material.configuration(),
            self._next_configuration,
            require_client_authentication=self.requires_client_certificates,
        )

    def reload(self) -> bool:
        """Read the files again; the next handshakes use them. False (and the old
        certificate kept) when they are not a valid configuration."""
        try:
            material = read_material(self.files)
        except ConfigError as error:
            log.warning("TLS files not reloaded, still serving the previous ones: %s", error)
            return False
        with self._lock:
            self._material = material
            self._pending = material.configuration()
        log.info("TLS files reloaded", extra={"fields": {"cert": str(self.files.cert)}})
        return True

    def _next_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's fetcher, called on its own threads at every handshake: a new
        configuration once after a reload, None (keep the current one) otherwise."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def server_tls(settings: Settings) -> ServerTls | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return ServerTls(
        TlsFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    )
