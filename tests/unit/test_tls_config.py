"""The transport rules of the settings, the checks of the TLS files, and dev-cert's
certificates and files (no server: tests/e2e/test_tls.py serves them)."""

from __future__ import annotations

import shutil
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from veritas_grpc import cli, cli_tls
from veritas_grpc.adapters.tls import TlsFiles, read_material
from veritas_grpc.config import ConfigError, check_transport, load_settings

STRONG = "k3Y-" + "x9Qz" * 10


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    cli_tls.write_dev_certs(directory, ("veritas.example.edu", "10.1.2.3"))
    return directory


def settings(tmp_path, **env: str):  # type: ignore[no-untyped-def]
    return load_settings({"VERITAS_JWT_SECRET": STRONG, "VERITAS_DATA_DIR": str(tmp_path), **env})


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("VERITAS_TLS_CERT_FILE", "VERITAS_TLS_KEY_FILE"),
        ("VERITAS_TLS_KEY_FILE", "VERITAS_TLS_CERT_FILE"),
    ],
)
def test_half_a_tls_pair_is_refused(tmp_path, given, missing):
    with pytest.raises(ConfigError, match=f"{given} is set but {missing} is not"):
        settings(tmp_path, **{given: "/etc/veritas/x.pem"})


def test_a_client_ca_without_tls_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="VERITAS_TLS_CLIENT_CA_FILE needs"):
        settings(tmp_path, VERITAS_TLS_CLIENT_CA_FILE="/etc/veritas/ca.pem")


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051", "veritas:50051"]
)
def test_production_refuses_plaintext_where_the_network_reaches(tmp_path, listen):
    with pytest.raises(ConfigError, match="VERITAS_ALLOW_PLAINTEXT=true") as refusal:
        check_transport(settings(tmp_path, VERITAS_LISTEN=listen))
    assert listen in str(refusal.value) and "VERITAS_TLS_CERT_FILE" in str(refusal.value)


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:50051", "127.0.0.2:50051", "[::1]:50051", "localhost:1"]
)
def test_production_serves_plaintext_on_loopback(tmp_path, listen):
    check_transport(settings(tmp_path, VERITAS_LISTEN=listen))


@pytest.mark.parametrize(
    "env",
    [
        {"VERITAS_ALLOW_PLAINTEXT": "true"},
        {"VERITAS_ENV": "demo"},
        {"VERITAS_ENV": "test"},
        {"VERITAS_TLS_CERT_FILE": "/c.pem", "VERITAS_TLS_KEY_FILE": "/k.pem"},
    ],
)
def test_plaintext_on_the_network_when_allowed_or_not_production(tmp_path, env):
    check_transport(settings(tmp_path, VERITAS_LISTEN="0.0.0.0:50051", **env))


def test_allow_plaintext_is_true_or_false(tmp_path):
    with pytest.raises(ConfigError, match="VERITAS_ALLOW_PLAINTEXT must be one of"):
        settings(tmp_path, VERITAS_ALLOW_PLAINTEXT="yes")


def files(certs, cert=cli_tls.SERVER_CERT_FILE, key=cli_tls.SERVER_KEY_FILE, ca=None):  # type: ignore[no-untyped-def]
    return TlsFiles(certs / cert, certs / key, certs / ca if ca else None)


def test_the_dev_files_are_a_valid_configuration(certs):
    material = read_material(files(certs, ca=cli_tls.CA_FILE))
    assert material.chain == (certs / cli_tls.SERVER_CERT_FILE).read_bytes()
    assert material.client_ca == (certs / cli_tls.CA_FILE).read_bytes()


def test_an_unreadable_file_is_named(certs, tmp_path):
    with pytest.raises(ConfigError, match="VERITAS_TLS_KEY_FILE: cannot read .*missing.pem"):
        read_material(TlsFiles(certs / cli_tls.SERVER_CERT_FILE, tmp_path / "missing.pem", None))


def test_a_certificate_file_without_a_certificate_is_refused(certs):
    with pytest.raises(ConfigError, match="VERITAS_TLS_CERT_FILE: .* holds no PEM certificate"):
        read_material(files(certs, cert=cli_tls.SERVER_KEY_FILE))


def test_a_key_file_without_a_key_is_refused(certs):
    with pytest.raises(ConfigError, match="VERITAS_TLS_KEY_FILE: .* holds no unencrypted PEM"):
        read_material(files(certs, key=cli_tls.SERVER_CERT_FILE))


def test_another_certificates_key_is_refused(certs):
    with pytest.raises(ConfigError, match="is not the key of the certificate"):
        read_material(files(certs, key=cli_tls.CLIENT_KEY_FILE))


def test_a_client_ca_file_without_a_certificate_is_refused(certs):
    with pytest.raises(ConfigError, match="VERITAS_TLS_CLIENT_CA_FILE: .* holds no PEM"):
        read_material(files(certs, ca=cli_tls.CLIENT_KEY_FILE))


def load(certs, name):  # type: ignore[no-untyped-def]
    return x509.load_pem_x509_certificate((certs / name).read_bytes())


def test_dev_cert_names_the_server_by_loopback_and_the_extra_names(certs):
    server = load(certs, cli_tls.SERVER_CERT_FILE)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} == {
        "localhost",
        "127.0.0.1",
        "::1",
        "veritas.example.edu",
        "10.1.2.3",
    }
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_dev_cert_signs_both_certificates_with_its_ca(certs):
    ca = load(certs, cli_tls.CA_FILE)
    for name in (cli_tls.SERVER_CERT_FILE, cli_tls.CLIENT_CERT_FILE):
        load(certs, name).verify_directly_issued_by(ca)
    client = load(certs, cli_tls.CLIENT_CERT_FILE)
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_dev_cert_keys_are_readable_by_their_owner_only(certs):
    for name in cli_tls.ALL_FILES:
        mode = stat.S_IMODE((certs / name).stat().st_mode)
        is_key = name.endswith("-key.pem")
        assert mode == (0o600 if is_key else 0o644), name


def test_dev_cert_keeps_existing_files_unless_forced(certs, tmp_path, capsys):
    target = tmp_path / "tls"
    shutil.copytree(certs, target)
    before = (target / cli_tls.SERVER_KEY_FILE).read_bytes()
    with pytest.raises(SystemExit, match="--force replaces them"):
        cli.main(["dev-cert", str(target)])
    assert (target / cli_tls.SERVER_KEY_FILE).read_bytes() == before
    assert cli.main(["dev-cert", str(target), "--force"]) == 0
    assert (target / cli_tls.SERVER_KEY_FILE).read_bytes() != before
    printed = capsys.readouterr().out
    assert f"VERITAS_TLS_CERT_FILE={target / cli_tls.SERVER_CERT_FILE}" in printed
    assert f"VERITAS_TLS_CLIENT_CA_FILE={target / cli_tls.CA_FILE}" in printed
