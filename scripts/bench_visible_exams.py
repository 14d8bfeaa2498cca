"""A teacher's exam listings as the number of exams grows (docs/BENCH_SCALE.md): on a
database generate_scale_data.py loaded, the teacher dashboard's prepared statements
(the visible exams, the recent flags) run with their generic plans as the server runs
them, p50 ms over --runs, first on the seed's exams, then with the exams copied
--copies times inside a transaction that is rolled back (each copy's creator drawn at
random from 5,000 accounts, the copies ANALYZEd). Afterwards the two tables are
vacuumed and reindexed, since a rollback does not shrink their indexes. Run the other
benchmarks' plans before this, or after it has cleaned up.

Usage (from scripts/): python bench_visible_exams.py --database NAME [--copies 99]
    [--runs 100] [--baseline-root DIR]
With --baseline-root, the same statements of that checkout (`git worktree add DIR
COMMIT`) are timed beside this one's, on the same connection.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_scale import TEACHER, database_arguments, resolve_url
from benchlib import ROOT, use_planner
from sqlalchemy import create_engine, text

from veritas_grpc.db.prepared import GENERIC_PLANS
from veritas_grpc.services.dashboards import DASHBOARD_EXAMS, RECENT_ALERTS

_STATEMENTS = """
import json, sys
from veritas_grpc.repositories.attempts import _RECENT_FLAGS
from veritas_grpc.repositories.exams import _visible_exams
def body(prepared):
    return prepared.prepare_sql.split(" AS ", 1)[1]
print(json.dumps({"exams": body(_visible_exams(False, False)), "flags": body(_RECENT_FLAGS)}))
"""
# The copies: every exam but the teacher's, again, under a new id and another creator.
_COPY_EXAMS = """
INSERT INTO exams SELECT (jsonb_populate_record(null::exams, to_jsonb(x) || jsonb_build_object(
    'id', gen_random_uuid(), 'create_request_id', null,
    'created_by',
    (SELECT array_agg(id) FROM (SELECT id FROM users LIMIT 5000) u)[1 + floor(random() * 5000)::int]
))).* FROM exams x, generate_series(1, :copies) g WHERE x.created_by <> :teacher
"""
# Each statement's ($2) limit as the dashboard sends it; both take the viewer as $1.
LIMITS = {"exams": DASHBOARD_EXAMS, "flags": RECENT_ALERTS}
_ADD_STATS = "INSERT INTO exam_stats (exam_id) SELECT id FROM exams ON CONFLICT DO NOTHING"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    database_arguments(parser)
    parser.add_argument("--copies", type=int, default=99)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--baseline-root", type=Path)
    return parser.parse_args()


def statements(root: Path) -> dict[str, str]:
    """The statements' text as the checkout at `root` prepares them."""
    found = subprocess.run(
        [sys.executable, "-c", _STATEMENTS],
        cwd=root,
        env={**os.environ, "PYTHONPATH": f"{root}:{root / 'generated'}"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(found.stdout)


def timings(cursor, sides: dict[str, dict[str, str]], teacher, runs: int) -> dict[str, float]:
    """Each statement of each side, the sides alternating run by run."""
    cursor.execute("DEALLOCATE ALL")
    for side, prepared in sides.items():
        for name, body in prepared.items():
            cursor.execute(f"PREPARE {side}_{name} AS {body}")
    samples: dict[str, list[float]] = {}
    for n in range(runs + 10):
        for name in next(iter(sides.values())):
            for side in sides:
                started = time.perf_counter()
                cursor.execute(f"EXECUTE {side}_{name}(%s, %s)", (teacher, LIMITS[name]))
                cursor.fetchall()
                if n >= 10:
                    took = (time.perf_counter() - started) * 1000
                    samples.setdefault(f"{name} ({side})", []).append(took)
    return {key: round(statistics.median(values), 3) for key, values in samples.items()}


def clean_up(engine) -> None:
    """What the rolled-back copies leave: dead rows, and indexes grown to hold them."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("exams", "exam_stats"):
            connection.execute(text(f"VACUUM (ANALYZE) {table}"))
            connection.execute(text(f"REINDEX TABLE {table}"))


def main() -> None:
    args = parse()
    url = resolve_url(args)
    use_planner(url)
    sides = {"this": statements(ROOT)}
    if args.baseline_root:
        sides["baseline"] = statements(args.baseline_root)
    engine = create_engine(url, connect_args={"options": GENERIC_PLANS})
    results: dict[str, object] = {}
    try:
        # The raw cursor and SQLAlchemy share the connection, so one transaction.
        with engine.connect() as connection:
            cursor = connection.connection.dbapi_connection.cursor()
            cursor.execute("SELECT id FROM users WHERE email = %s", (TEACHER,))
            teacher = cursor.fetchone()[0]
            for copied in (False, True):
                if copied:
                    copy = {"copies": args.copies, "teacher": teacher}
                    connection.execute(text(_COPY_EXAMS), copy)
                    connection.execute(text(_ADD_STATS))
                    connection.execute(text("ANALYZE exams"))
                    connection.execute(text("ANALYZE exam_stats"))
                exams = connection.execute(text("SELECT count(*) FROM exams")).scalar_one()
                results[f"{exams} exams"] = timings(cursor, sides, teacher, args.runs)
                print(f"{exams} exams: {results[f'{exams} exams']}", file=sys.stderr)
            cursor.close()
            connection.rollback()
    finally:
        clean_up(engine)
        engine.dispose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
