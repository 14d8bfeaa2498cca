import pytest

from veritas_grpc.config import ConfigError, load_settings

STRONG = "k3Y-" + "x9Qz" * 10


def test_production_requires_a_jwt_secret(tmp_path):
    with pytest.raises(ConfigError, match="VERITAS_JWT_SECRET must be set"):
        load_settings({"VERITAS_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize("secret", ["short", "secret" * 2, "a" * 64, "changeme"])
def test_weak_secrets_are_refused(secret, tmp_path):
    with pytest.raises(ConfigError):
        load_settings({"VERITAS_JWT_SECRET": secret, "VERITAS_DATA_DIR": str(tmp_path)})


def test_demo_mode_generates_a_secret_that_survives_restarts(tmp_path):
    env = {"VERITAS_ENV": "demo", "VERITAS_DATA_DIR": str(tmp_path)}
    first = load_settings(env)
    second = load_settings(env)
    assert len(first.jwt_secret) >= 32
    assert first.jwt_secret == second.jwt_secret
    assert (tmp_path / "demo-jwt-secret").stat().st_mode & 0o077 == 0


def test_commands_without_tokens_may_run_without_a_secret(tmp_path):
    settings = load_settings({"VERITAS_DATA_DIR": str(tmp_path)}, require_secret=False)
    assert settings.jwt_secret == ""


def test_values_are_read_and_checked(tmp_path):
    env = {
        "VERITAS_JWT_SECRET": STRONG,
        "VERITAS_LISTEN": "0.0.0.0:6000",
        "VERITAS_BCRYPT_ROUNDS": "10",
        "VERITAS_DATABASE_URL": "postgresql://u@db/veritas",
    }
    settings = load_settings(env)
    assert settings.host_port == ("0.0.0.0", 6000)
    assert settings.bcrypt_rounds == 10
    assert settings.database_url == "postgresql://u@db/veritas"
    assert "jwt_secret" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VERITAS_LISTEN", "no-port"),
        ("VERITAS_BCRYPT_ROUNDS", "3"),
        ("VERITAS_BCRYPT_ROUNDS", "twelve"),
        ("VERITAS_ENV", "staging"),
        ("VERITAS_LOG_FORMAT", "xml"),
    ],
)
def test_bad_values_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({"VERITAS_JWT_SECRET": STRONG, name: value})


def test_throttle_defaults():
    settings = load_settings({"VERITAS_JWT_SECRET": STRONG})
    assert (
        settings.login_max_failures,
        settings.login_max_failures_per_address,
        settings.login_max_failures_per_account,
    ) == (5, 100, 50)
    assert (settings.login_failure_window_seconds, settings.login_lockout_seconds) == (900, 900)
    assert (settings.register_max_per_address, settings.register_window_seconds) == (20, 3600)
    assert settings.trusted_proxies == ()


def test_throttle_settings_are_read():
    settings = load_settings(
        {
            "VERITAS_JWT_SECRET": STRONG,
            "VERITAS_LOGIN_MAX_FAILURES": "3",
            "VERITAS_LOGIN_MAX_FAILURES_PER_ADDRESS": "300",
            "VERITAS_LOGIN_MAX_FAILURES_PER_ACCOUNT": "40",
            "VERITAS_REGISTER_MAX_PER_ADDRESS": "500",
            "VERITAS_REGISTER_WINDOW_SECONDS": "600",
            "VERITAS_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16, fd00::/8",
        }
    )
    assert settings.login_max_failures_per_address == 300
    assert settings.login_max_failures_per_account == 40
    assert (settings.register_max_per_address, settings.register_window_seconds) == (500, 600)
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.5/32", "10.1.0.0/16", "fd00::/8"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VERITAS_TRUSTED_PROXIES", "10.0.0.1, envoy", "'envoy' is not an IP address"),
        ("VERITAS_TRUSTED_PROXIES", "10.0.0.0/33", "is not an IP address"),
        ("VERITAS_LOGIN_MAX_FAILURES_PER_ADDRESS", "4", "at least VERITAS_LOGIN_MAX_FAILURES"),
        ("VERITAS_LOGIN_MAX_FAILURES_PER_ACCOUNT", "2", "at least VERITAS_LOGIN_MAX_FAILURES"),
        ("VERITAS_LOGIN_MAX_FAILURES_PER_ADDRESS", "0", "between 1 and"),
        ("VERITAS_REGISTER_MAX_PER_ADDRESS", "0", "between 1 and"),
        ("VERITAS_REGISTER_WINDOW_SECONDS", "many", "must be an integer"),
    ],
)
def test_bad_throttle_settings_are_refused(name, value, message):
    with pytest.raises(ConfigError, match=name) as refused:
        load_settings({"VERITAS_JWT_SECRET": STRONG, name: value})
    assert message in str(refused.value)


def test_enrolment_settings():
    defaults = load_settings({"VERITAS_JWT_SECRET": STRONG})
    assert defaults.self_registration is True
    assert defaults.set_password_token_ttl_seconds == 7 * 86400
    settings = load_settings(
        {
            "VERITAS_JWT_SECRET": STRONG,
            "VERITAS_SELF_REGISTRATION": "false",
            "VERITAS_SET_PASSWORD_TOKEN_TTL_SECONDS": "3600",
        }
    )
    assert settings.self_registration is False
    assert settings.set_password_token_ttl_seconds == 3600


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VERITAS_SELF_REGISTRATION", "no", "must be one of true, false"),
        ("VERITAS_SET_PASSWORD_TOKEN_TTL_SECONDS", "0", "between 1 and"),
        ("VERITAS_SET_PASSWORD_TOKEN_TTL_SECONDS", str(91 * 86400), "between 1 and"),
    ],
)
def test_bad_enrolment_settings_are_refused(name, value, message):
    with pytest.raises(ConfigError, match=name) as refused:
        load_settings({"VERITAS_JWT_SECRET": STRONG, name: value})
    assert message in str(refused.value)
