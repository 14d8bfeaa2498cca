"""`veritas import-students FILE.csv`: AdminService.ImportStudents for operators.

The file has the header `email,full_name,enrollment_id` (UTF-8, a BOM is fine). Every
row's result goes to standard output as CSV, with the set-password token of each
created account (to mail to its owner; tokens are shown once and never stored), and a
summary to standard error. The exit status is 1 when any row was rejected, 2 when the
file cannot be read as such a CSV.
"""

from __future__ import annotations

import argparse
import csv
import sys

from veritas_grpc.cli_support import audited_services
from veritas_grpc.services.enrolment import MAX_IMPORT_ROWS, StudentRow

HEADER = ("email", "full_name", "enrollment_id")
OUTPUT_HEADER = ("line", "email", "outcome", "reason", "user_id", "token", "token_expires_at")
EXIT_REJECTED = 1
EXIT_BAD_FILE = 2


class BadFile(ValueError):
    pass


def read_rows(path: str) -> list[StudentRow]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None or tuple(h.strip().lower() for h in header) != HEADER:
                raise BadFile(f"the first line must be {','.join(HEADER)}")
            rows = []
            for line, record in enumerate(reader, start=2):
                if not any(cell.strip() for cell in record):
                    continue  # blank lines
                if len(record) != len(HEADER):
                    raise BadFile(f"line {line}: expected {len(HEADER)} fields, got {len(record)}")
                rows.append(StudentRow(*record))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BadFile(str(error)) from None
    if not rows:
        raise BadFile("no rows after the header")
    if len(rows) > MAX_IMPORT_ROWS:
        raise BadFile(f"at most {MAX_IMPORT_ROWS} rows per import (split the file)")
    return rows


def cmd_import_students(args: argparse.Namespace) -> int:
    try:
        rows = read_rows(args.file)
    except BadFile as error:
        print(f"error: {args.file}: {error}", file=sys.stderr)
        return EXIT_BAD_FILE
    services = audited_services("import-students")
    try:
        report = services.enrolment.import_students(None, rows)
    finally:
        services.close()
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(OUTPUT_HEADER)
    for result in report.results:
        token = result.set_password
        out.writerow(
            (
                result.index + 2,  # the line of the file (the header is line 1)
                result.email,
                result.outcome,
                result.reason,
                result.user_id or "",
                token.token if token else "",
                token.expires_at.isoformat() if token else "",
            )
        )
    counts = report.counts
    print(
        f"{len(report.results)} rows: {counts['created']} created, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {counts['rejected']} rejected",
        file=sys.stderr,
    )
    return EXIT_REJECTED if counts["rejected"] else 0


def add_enrolment_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    imports = commands.add_parser(
        "import-students",
        help="create or update students from a CSV file (email,full_name,enrollment_id); "
        "prints each row's result and the new accounts' set-password tokens as CSV",
    )
    imports.add_argument("file", help="CSV with the header email,full_name,enrollment_id")
    imports.set_defaults(handler=cmd_import_students)
