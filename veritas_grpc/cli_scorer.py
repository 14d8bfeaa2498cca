"""`veritas scorer`: the reference scorer of the analysis queue (veritas_grpc.scorer)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from veritas_grpc.cli_tls import add_client_tls_arguments, channel_credentials
from veritas_grpc.observability import configure_logging

PASSWORD_VARIABLE = "VERITAS_SCORER_PASSWORD"
EXIT_SIGN_IN_REFUSED = 3


def _password(args: argparse.Namespace) -> str:
    """From --password-file or VERITAS_SCORER_PASSWORD: never from the command line,
    where `ps` and shell history would keep it."""
    if args.password_file:
        lines = Path(args.password_file).read_text().splitlines()
        return lines[0] if lines else ""
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if not password:
        raise SystemExit(f"veritas scorer: set {PASSWORD_VARIABLE} or give --password-file")
    return password


def cmd_scorer(args: argparse.Namespace) -> int:
    from veritas_grpc.scorer.run import ScorerConfig, run_scorer
    from veritas_grpc.scorer.session import SignInRefused
    from veritas_grpc.scorer.worker import WorkerSettings

    configure_logging(args.log_level, args.log_format)
    config = ScorerConfig(
        target=args.target,
        email=args.email,
        password=_password(args),
        worker=WorkerSettings(
            concurrency=args.concurrency,
            lease_seconds=args.lease_seconds,
            wait_seconds=args.wait_seconds,
            page_size=args.page_size,
            grace_seconds=args.grace_seconds,
        ),
        command=args.command,
        command_timeout_seconds=args.command_timeout,
        credentials=channel_credentials(args),
        parent_pid=args.parent_pid,
    )
    try:
        asyncio.run(run_scorer(config))
    except SignInRefused as refused:
        print(f"veritas scorer: sign-in refused: {refused}", file=sys.stderr)
        return EXIT_SIGN_IN_REFUSED
    return 0


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def add_scorer_command(commands: Any) -> None:
    scorer = commands.add_parser(
        "scorer",
        help="the reference scorer: analyse the attempts of the analysis queue",
        description="Claims analysis jobs, reads each attempt's evidence, scores it with "
        "the built-in rules (or --command) and saves the analysis. The password comes "
        f"from {PASSWORD_VARIABLE} or --password-file. SIGTERM/SIGINT stop it gracefully.",
    )
    scorer.add_argument("--target", default="127.0.0.1:50051", help="host:port of the server")
    scorer.add_argument("--email", required=True, help="the SERVICE account to sign in as")
    scorer.add_argument("--password-file", help="a file whose first line is the password")
    scorer.add_argument(
        "--concurrency", type=_bounded(1, 100), default=4, help="jobs in flight (default 4)"
    )
    scorer.add_argument(
        "--lease-seconds", type=_bounded(10, 3600), default=60, help="lease length (default 60)"
    )
    scorer.add_argument(
        "--wait-seconds", type=_bounded(1, 60), default=20, help="long-poll wait (default 20)"
    )
    scorer.add_argument(
        "--page-size", type=_bounded(1, 1000), default=500, help="events per evidence message"
    )
    scorer.add_argument(
        "--grace-seconds",
        type=float,
        default=20.0,
        help="on SIGTERM, how long in-flight jobs may take to finish (default 20)",
    )
    scorer.add_argument(
        "--command",
        help="an external program that analyses an attempt: evidence as JSON lines on its "
        "standard input, the analysis as one JSON object on its standard output (README)",
    )
    scorer.add_argument(
        "--command-timeout",
        type=float,
        default=120.0,
        help="seconds the command may take per attempt (default 120)",
    )
    add_client_tls_arguments(scorer)
    scorer.add_argument("--log-level", default=os.environ.get("VERITAS_LOG_LEVEL", "INFO"))
    scorer.add_argument(
        "--log-format",
        choices=["json", "text"],
        default=os.environ.get("VERITAS_LOG_FORMAT", "json"),
    )
    # `veritas serve --demo-scorer` gives its pid: the scorer stops when that is gone.
    scorer.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    scorer.set_defaults(handler=cmd_scorer)
