"""The `veritas` command: serve, migrate, create-user, seed-demo, audit, ..."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from veritas_grpc import bootstrap
from veritas_grpc.adapters.metrics import clear_multiprocess_dir
from veritas_grpc.cli_agent import add_agent_commands
from veritas_grpc.cli_audit import add_audit_commands
from veritas_grpc.cli_backup import add_backup_commands
from veritas_grpc.cli_data_subjects import add_data_subject_commands
from veritas_grpc.cli_enrolment import add_enrolment_commands
from veritas_grpc.cli_health import add_healthcheck_command
from veritas_grpc.cli_scorer import add_scorer_command
from veritas_grpc.cli_support import audited_services
from veritas_grpc.cli_tls import add_tls_commands
from veritas_grpc.config import ConfigError, Settings, load_settings
from veritas_grpc.db import migrate
from veritas_grpc.db.locate import database_url
from veritas_grpc.domain.errors import DomainError, InvalidArgument
from veritas_grpc.domain.identity import Role
from veritas_grpc.domain.partitions import PartitionUpkeep
from veritas_grpc.observability import configure_logging
from veritas_grpc.scorer_child import ScorerChild
from veritas_grpc.server import serve_until_signalled, start_server, tune_interpreter
from veritas_grpc.services.demo import DEMO_PASSWORD, DEMO_SCORER_EMAIL, seed_demo
from veritas_grpc.services.partition_upkeep import use_archive_dir

log = logging.getLogger("veritas.cli")
# sysexits' EX_TEMPFAIL: a cron job or an operator should simply run it again later.
EXIT_TEMPORARY_FAILURE = 75
PURGE_RETRY_PAUSE_SECONDS = 2.0


def _local_address(settings: Settings, port: int) -> str:
    host = settings.host_port[0]
    return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def _print_banner(settings: Settings, port: int, seeded: bool) -> None:
    address = _local_address(settings, port)
    listening = f"{settings.listen.rsplit(':', 1)[0]}:{port}"
    # With TLS, grpcurl needs the CA that signed the server's certificate.
    transport = "-cacert CA.pem" if settings.serves_tls else "-plaintext"
    lines = [
        f"Veritas is serving on {address} (listening on {listening})",
        "",
        "  Connect:",
        f"    .venv/bin/grpcurl {transport} {address} list",
        f'    .venv/bin/grpcurl {transport} -d \'{{"email":"sam@veritas.demo",'
        f'"password":"{DEMO_PASSWORD}"}}\' {address} veritas.v1.AuthService/Login',
        f"    .venv/bin/grpcurl {transport} -H 'authorization: Bearer <access_token>' "
        f"{address} veritas.v1.AuthService/GetCurrentUser",
    ]
    if seeded:
        from veritas_grpc.services.demo import DEMO_ACCOUNTS

        lines += ["", f"  Demo accounts (password {DEMO_PASSWORD}):"]
        lines += [f"    {a.role.value:<8} {a.email}" for a in DEMO_ACCOUNTS]
    lines += ["", "  Stop with Ctrl-C (in-flight calls get a grace period).", ""]
    print("\n".join(lines), flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.seed_demo and settings.is_production:
        raise ConfigError("--seed-demo creates accounts with a published password: demo mode only")
    if args.demo_scorer and settings.is_production:
        raise ConfigError("--demo-scorer signs in with a published password: demo mode only")
    if settings.is_production and not os.environ.get("VERITAS_DATABASE_URL"):
        # A production server forgetting its database would start a throwaway one and
        # write the exam day into the working directory.
        raise ConfigError(
            "production needs VERITAS_DATABASE_URL: the embedded PostgreSQL is for trying "
            "Veritas (VERITAS_ENV=demo or test)"
        )
    url = database_url()
    if args.migrate:
        migrate.upgrade(url)
    if args.seed_demo:
        services = bootstrap.build_services(settings, url)
        try:
            seed_demo(
                services.accounts,
                services.exams,
                services.attempts,
                services.analysis,
                services.monitoring,
            )
        finally:
            services.close()

    if settings.shares_port and settings.host_port[1] == 0:
        raise ConfigError("VERITAS_PROCESSES > 1 needs a fixed port in VERITAS_LISTEN")
    if settings.serves_tls:
        # A SIGHUP (re-read the TLS files) must not kill a server whose handler is not in
        # place yet (serve_until_signalled); the other processes inherit this.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # The metric files of an earlier run would add to this one's (README, "Metrics").
    if settings.metrics_dir is not None and settings.process_index == 0:
        clear_multiprocess_dir(settings.metrics_dir)
    # Other processes serve the same port; each runs its own event loop and pools.
    helpers = [
        subprocess.Popen(
            [sys.executable, "-m", "veritas_grpc.cli", "serve"],
            env={**os.environ, "VERITAS_DATABASE_URL": url, "VERITAS_PROCESS_INDEX": str(n)},
            stdout=subprocess.DEVNULL,
        )
        for n in range(1, settings.processes)
        if not os.environ.get("VERITAS_PROCESS_INDEX")
    ]

    primary = not os.environ.get("VERITAS_PROCESS_INDEX")

    async def main() -> None:
        running = await start_server(settings, url)
        tune_interpreter()
        scorer = ScorerChild(DEMO_SCORER_EMAIL, DEMO_PASSWORD) if args.demo_scorer else None

        def banner() -> None:
            if primary:
                _print_banner(settings, running.port, args.seed_demo)
            if primary and scorer is not None:
                scorer.start(_local_address(settings, running.port))

        def reload_helpers() -> None:
            for helper in helpers:
                helper.send_signal(signal.SIGHUP)

        try:
            await serve_until_signalled(
                running,
                ready=banner,
                before_stop=scorer.stop if scorer else None,
                on_reload=reload_helpers,
            )
        finally:
            if scorer is not None:
                await scorer.stop()

    try:
        asyncio.run(main())
    finally:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            helper.wait(timeout=settings.shutdown_grace_seconds + 10)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    url = database_url()
    if args.downgrade:
        migrate.downgrade(url, args.revision or "base")
    else:
        migrate.upgrade(url, args.revision or "head")
    print("migrations applied", file=sys.stderr)
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise InvalidArgument.of("password", "the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_create_user(args: argparse.Namespace) -> int:
    services = audited_services("create-user")
    try:
        password = _read_password()
        account = services.accounts.create_account(
            Role(args.role), args.email, password, args.full_name, args.enrollment_id
        )
    finally:
        services.close()
    print(f"created {account.role.value} {account.email} (id {account.id})")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    settings = load_settings(require_secret=False)
    if settings.is_production:
        raise ConfigError("seed-demo creates accounts with a published password: demo mode only")
    services = bootstrap.build_services(settings, database_url())
    try:
        for account in seed_demo(
            services.accounts,
            services.exams,
            services.attempts,
            services.analysis,
            services.monitoring,
        ):
            print(f"{account.role.value:<8} {account.email}")
    finally:
        services.close()
    return 0


def cmd_sweep_attempts(args: argparse.Namespace) -> int:
    settings = load_settings(require_secret=False)
    services = bootstrap.build_services(settings, database_url())
    try:
        total = 0
        while swept := services.attempts.sweep_overdue():
            total += swept
    finally:
        services.close()
    print(f"timed out {total} overdue attempts")
    return 0


def cmd_purge_events(args: argparse.Namespace) -> int:
    settings = load_settings(require_secret=False)
    services = bootstrap.build_services(settings, database_url())
    if args.archive_dir:
        use_archive_dir(Path(args.archive_dir).resolve())
    try:
        done = _purge_until_done(services, args.older_than_days, args.retry_seconds)
    finally:
        services.close()
    days = ", ".join(day.isoformat() for day in done.changed) or "none"
    print(f"dropped {len(done.changed)} daily event partitions ({days})")
    if done.busy:
        busy = ", ".join(day.isoformat() for day in done.busy)
        print(f"still in use, not dropped: {busy}; run again later", file=sys.stderr)
        return EXIT_TEMPORARY_FAILURE
    return 0


def _purge_until_done(
    services: bootstrap.Services, older_than_days: int, retry_seconds: float
) -> PartitionUpkeep:
    """Partitions a long reader holds are busy (ingestion must not queue behind their
    DROP): try them again every few seconds, for up to retry_seconds."""
    done = services.monitoring.purge_partitions(older_than_days)
    deadline = time.monotonic() + retry_seconds
    while done.busy and time.monotonic() < deadline:
        time.sleep(PURGE_RETRY_PAUSE_SECONDS)
        again = services.monitoring.purge_partitions(older_than_days)
        done = PartitionUpkeep(done.changed + again.changed, again.busy)
    return done


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veritas", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve gRPC on VERITAS_LISTEN")
    serve.add_argument("--migrate", action="store_true", help="apply migrations first")
    serve.add_argument("--seed-demo", action="store_true", help="create the demo accounts first")
    serve.add_argument(
        "--demo-scorer",
        action="store_true",
        help="also run the reference scorer (veritas scorer) as the demo service account, "
        "stopped with the server (demo mode only)",
    )
    serve.set_defaults(handler=cmd_serve)

    migrate_cmd = commands.add_parser("migrate", help="apply database migrations")
    migrate_cmd.add_argument("--revision", help="target revision (default: head, or base)")
    migrate_cmd.add_argument("--downgrade", action="store_true", help="downgrade instead")
    migrate_cmd.set_defaults(handler=cmd_migrate)

    create = commands.add_parser(
        "create-user", help="create an account; the password is read from standard input"
    )
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--email", required=True)
    create.add_argument("--full-name", required=True)
    create.add_argument("--enrollment-id", help="required for students")
    create.set_defaults(handler=cmd_create_user)

    sweep = commands.add_parser(
        "sweep-attempts", help="time out in-progress attempts past their deadline plus grace"
    )
    sweep.set_defaults(handler=cmd_sweep_attempts)

    purge = commands.add_parser(
        "purge-events", help="drop the monitoring-event partitions older than N days"
    )
    purge.add_argument("--older-than-days", type=int, required=True)
    purge.add_argument(
        "--archive-dir",
        help="write each partition there (gzip CSV) before dropping it "
        "(default VERITAS_EVENT_ARCHIVE_DIR; veritas restore-events brings one back)",
    )
    purge.add_argument(
        "--retry-seconds",
        type=float,
        default=60,
        help="how long to keep retrying partitions still in use (default 60)",
    )
    purge.set_defaults(handler=cmd_purge_events)

    seed = commands.add_parser("seed-demo", help="create the demo accounts (demo mode only)")
    seed.set_defaults(handler=cmd_seed_demo)
    add_audit_commands(commands)
    add_backup_commands(commands)
    add_data_subject_commands(commands)
    add_enrolment_commands(commands)
    add_agent_commands(commands)
    add_scorer_command(commands)
    add_healthcheck_command(commands)
    add_tls_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except DomainError as error:
        detail = ""
        if isinstance(error, InvalidArgument):
            detail = "; ".join(f"{v.field} {v.description}" for v in error.violations)
        print(f"error: {error.message}{': ' + detail if detail else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
