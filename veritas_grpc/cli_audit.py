"""`veritas audit query` and `veritas audit verify`: the audit trail for operators
without a gRPC client. Both are audited, like the AdminService calls they mirror."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from veritas_grpc.cli_support import audited_services
from veritas_grpc.domain.audit import AuditQuery

EXIT_BROKEN_CHAIN = 1
QUERY_PAGE = 500


def cmd_verify(args: argparse.Namespace) -> int:
    services = audited_services("audit")
    try:
        report = services.audit_trail.verify(None)
    finally:
        services.close()
    verdict, head = report.verdict, f"{report.head_sequence} {report.head_hash.hex()}"
    print(f"checked {verdict.checked_count} rows; head {head}")
    if verdict.broken is None:
        print("intact")
        return 0
    print(f"broken at sequence {verdict.broken.sequence}: {verdict.broken.reason}", file=sys.stderr)
    return EXIT_BROKEN_CHAIN


def cmd_query(args: argparse.Namespace) -> int:
    query = AuditQuery(
        actor_id=args.actor_id,
        action=args.action,
        resource_type=args.resource_type,
        resource_id=args.resource_id,
        outcome=args.outcome,
        start_time=args.since,
        end_time=args.until,
    )
    services = audited_services("audit")
    try:
        printed, token = 0, ""
        while printed < args.limit:
            size = min(QUERY_PAGE, args.limit - printed)
            page = services.audit_trail.query(None, query, size, token)
            for entry in page.items:
                print(json.dumps(entry.as_document(), sort_keys=True))
            printed += len(page.items)
            token = page.next_token
            if not token:
                break
    finally:
        services.close()
    return 0


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-12-01T09:00:00+00:00")
    return value


def add_audit_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = commands.add_parser("audit", help="read or verify the audit trail")
    actions = audit.add_subparsers(dest="audit_command", required=True)

    verify = actions.add_parser("verify", help="check the hash chain; exit 1 if broken")
    verify.set_defaults(handler=cmd_verify)

    query = actions.add_parser("query", help="print audit rows as JSON lines, newest first")
    query.add_argument("--actor-id")
    query.add_argument("--action")
    query.add_argument("--resource-type")
    query.add_argument("--resource-id")
    query.add_argument("--outcome", choices=["success", "failure", "denied"])
    query.add_argument("--since", type=_time, help="ISO time with zone: rows at or after")
    query.add_argument("--until", type=_time, help="ISO time with zone: rows before")
    query.add_argument("--limit", type=int, default=100)
    query.set_defaults(handler=cmd_query)
