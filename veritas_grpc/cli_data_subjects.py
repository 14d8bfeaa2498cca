"""`veritas export-student`, `erase-student`, `restore-events` and `prune-audit`: the
data-subject requests and retention for operators without a gRPC client. Each is
audited like the AdminService call it mirrors (with no actor: the operator)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veritas_grpc.cli_support import audited_services
from veritas_grpc.services.partition_upkeep import DEFAULT_HOLD_DAYS

EXIT_NOT_CONFIRMED = 1


def cmd_export_student(args: argparse.Namespace) -> int:
    """One JSON object per line on standard output: {"kind": ..., "data": ...}."""
    services = audited_services("export-student")
    try:
        student_id = services.data_subjects.student_id_by_email(args.email)
        count = 0
        for chunk in services.data_subjects.export(None, student_id):
            for record in chunk:
                sys.stdout.write(json.dumps({"kind": record.kind, "data": record.data}) + "\n")
            count += len(chunk)
        sys.stdout.flush()
    finally:
        services.close()
    print(f"exported {count} records of student {student_id}", file=sys.stderr)
    return 0


def cmd_erase_student(args: argparse.Namespace) -> int:
    services = audited_services("erase-student")
    try:
        student_id = services.data_subjects.student_id_by_email(args.email)
        if not args.yes:
            print(
                f"This erases student {args.email} ({student_id}) for good: e-mail, name, "
                "enrollment id, events, analyses, reviews and sessions.",
                file=sys.stderr,
            )
            print("Type the e-mail address to confirm: ", end="", file=sys.stderr, flush=True)
            typed = sys.stdin.readline().strip()
            if typed.lower() != args.email.strip().lower():
                print("not confirmed: nothing was erased", file=sys.stderr)
                return EXIT_NOT_CONFIRMED
        report = services.data_subjects.erase(None, student_id, args.email)
    finally:
        services.close()
    print(
        f"erased student {student_id}, now {report.pseudonym}: "
        f"{report.erased_event_count} events, {report.erased_analysis_count} analyses, "
        f"{report.erased_review_count} reviews; {report.anonymized_attempt_count} attempts "
        f"kept anonymous; {report.pseudonymized_audit_count} audit rows pseudonymized"
    )
    return 0


def cmd_restore_events(args: argparse.Namespace) -> int:
    services = audited_services("restore-events")
    try:
        restored = services.event_archive.restore(Path(args.file), args.hold_days)
    finally:
        services.close()
    print(
        f"restored {restored.day.isoformat()}: {restored.added_count} events added "
        f"({restored.read_count} in the file); kept until {restored.held_until.isoformat()}"
    )
    return 0


def cmd_prune_audit(args: argparse.Namespace) -> int:
    services = audited_services("prune-audit")
    try:
        report = services.audit_trail.prune(None, args.older_than_days)
    finally:
        services.close()
    print(f"pruned {report.deleted_count} audit rows (up to sequence {report.pruned_sequence})")
    return 0


def add_data_subject_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = commands.add_parser(
        "export-student", help="everything stored about a student, as JSON lines on stdout"
    )
    export.add_argument("--email", required=True)
    export.set_defaults(handler=cmd_export_student)

    erase = commands.add_parser(
        "erase-student", help="erase a student's personal data (asks to type the e-mail)"
    )
    erase.add_argument("--email", required=True)
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erase.set_defaults(handler=cmd_erase_student)

    restore = commands.add_parser(
        "restore-events", help="bring back one archived day of events (purge-events --archive-dir)"
    )
    restore.add_argument("file", help="a monitoring_events_pYYYYMMDD.csv.gz archive")
    restore.add_argument(
        "--hold-days",
        type=int,
        default=DEFAULT_HOLD_DAYS,
        help=f"keep the day this long past retention (default {DEFAULT_HOLD_DAYS})",
    )
    restore.set_defaults(handler=cmd_restore_events)

    prune = commands.add_parser("prune-audit", help="delete audit rows older than N days")
    prune.add_argument("--older-than-days", type=int, required=True)
    prune.set_defaults(handler=cmd_prune_audit)
