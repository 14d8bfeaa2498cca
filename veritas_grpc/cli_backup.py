"""`veritas backup DIR` and `veritas restore DIR --into URL` (README, "Backup and
restore"): a consistent pg_dump with a manifest of its row counts, and its restore into
an empty database, checked against those counts. A backup copies every student's data
out of the system, so it is audited (database.backup), like a data export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from veritas_grpc.adapters import backup, pg_tools
from veritas_grpc.cli_support import audited_services
from veritas_grpc.config import load_settings
from veritas_grpc.db.locate import database_url

EXIT_REFUSED = 1
EXIT_DIFFERENT = 3


def cmd_backup(args: argparse.Namespace) -> int:
    tools = pg_tools.bin_dir(load_settings(require_secret=False).pg_bin_dir)
    directory = Path(args.directory).resolve()
    # Checked first: a backup that could not be audited is not taken.
    services = audited_services("backup")
    try:
        try:
            manifest = backup.back_up(database_url(), directory, tools)
        except (backup.BackupRefused, pg_tools.ToolFailed) as error:
            services.audit_trail.record_backup(
                "failure", {"directory": str(directory), "reason": str(error)}
            )
            print(f"backup refused: {error}", file=sys.stderr)
            return EXIT_REFUSED
        services.audit_trail.record_backup(
            "success",
            {
                "directory": str(directory),
                "snapshot": manifest.snapshot,
                "dump_sha256": manifest.dump_sha256,
                "rows": sum(manifest.tables.values()),
            },
        )
    finally:
        services.close()
    rows = sum(manifest.tables.values())
    print(
        f"backed up {manifest.database} at revision {manifest.migration_revision}: "
        f"{len(manifest.tables)} tables, {rows} rows, {manifest.dump_bytes} bytes "
        f"({manifest.pg_dump_version}) into {args.directory}"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    settings = load_settings(require_secret=False)
    tools = pg_tools.bin_dir(settings.pg_bin_dir)
    try:
        report = backup.restore(
            Path(args.directory).resolve(),
            args.into,
            tools,
            args.replace,
            source=settings.database_url,
        )
    except (backup.BackupRefused, pg_tools.ToolFailed) as error:
        print(f"restore refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    differences = report.differences
    for line in differences:
        print(f"differs: {line}", file=sys.stderr)
    if differences:
        return EXIT_DIFFERENT
    manifest = report.manifest
    print(
        f"restored {len(report.found)} tables, {sum(report.found.values())} rows, "
        f"revision {report.found_revision}: every count matches the backup of "
        f"{manifest.created_at}"
    )
    return 0


def add_backup_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    make = commands.add_parser(
        "backup", help="pg_dump the database (custom format) with a manifest of row counts"
    )
    make.add_argument("directory", help="a new or empty folder for the dump and its manifest")
    make.set_defaults(handler=cmd_backup)

    back = commands.add_parser(
        "restore",
        help="restore a backup into an empty database and check its counts "
        f"(exit {EXIT_DIFFERENT} if they differ)",
    )
    back.add_argument("directory", help="a folder `veritas backup` wrote")
    back.add_argument("--into", required=True, help="the database to restore into (SQLAlchemy URL)")
    back.add_argument(
        "--replace",
        action="store_true",
        help="drop everything in the target's schema first (destroys what it holds)",
    )
    back.set_defaults(handler=cmd_restore)
