"""A teacher's exam listings as the number of exams grows (docs/BENCH_SCALE.md): on a
database generate_scale_data.py loaded, the teacher dashboard's prepared statements
(the visible exams, the recent flags) run with their generic plans as the server runs
them, p50 ms over --runs, first on the seed's exams, then with the exams copied
--copies times inside a transaction that is rolled back (each copy's creator drawn
from 5,000 accounts, the copies ANALYZEd; nothing stays).

Usage (from scripts/): python bench_visible_exams.py --database NAME [--copies 99]
    [--runs 100] [--baseline-root DIR]
With --baseline-root, the same statements of that checkout (`git worktree add DIR
COMMIT`) are timed beside this one's, on the same connection.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_scale import TEACHER, resolve_url
from benchlib import ROOT, use_planner
from sqlalchemy import create_engine, text

_STATEMENTS = """
import json, sys
from veritas_grpc.repositories.attempts import _RECENT_FLAGS
from veritas_grpc.repositories.exams import _visible_exams
body = lambda p: p.prepare_sql.split(" AS ", 1)[1]
print(json.dumps({"exams": body(_visible_exams(False, False)), "flags": body(_RECENT_FLAGS)}))
"""
# The copies: every exam but the teacher's, again, under a new id and another creator.
_COPY_EXAMS = """
INSERT INTO exams SELECT (jsonb_populate_record(null::exams, to_jsonb(x) || jsonb_build_object(
    'id', gen_random_uuid(), 'create_request_id', null,
    'created_by', (SELECT array_agg(id) FROM (SELECT id FROM users LIMIT 5000) u)[1 + g % 5000]
))).* FROM exams x, generate_series(1, :copies) g WHERE x.created_by <> :teacher
"""
_ADD_STATS = "INSERT INTO exam_stats (exam_id) SELECT id FROM exams ON CONFLICT DO NOTHING"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database")
    parser.add_argument("--database-url")
    parser.add_argument("--copies", type=int, default=99)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--baseline-root", type=Path)
    return parser.parse_args()


def statements(root: Path) -> dict[str, str]:
    """The statements' text as the checkout at `root` prepares them."""
    found = subprocess.run(
        [sys.executable, "-c", _STATEMENTS],
        cwd=root,
        env={"PYTHONPATH": f"{root}:{root / 'generated'}"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(found.stdout)


def timings(cursor, sides: dict[str, dict[str, str]], teacher, runs: int) -> dict[str, float]:
    cursor.execute("DEALLOCATE ALL")
    found = {}
    for side, prepared in sides.items():
        for name, body in prepared.items():
            cursor.execute(f"PREPARE {side}_{name} AS {body}")
    for name in next(iter(sides.values())):
        for side in sides:
            samples = []
            for _ in range(runs + 10):
                started = time.perf_counter()
                cursor.execute(f"EXECUTE {side}_{name}(%s, 20)", (teacher,))
                cursor.fetchall()
                samples.append((time.perf_counter() - started) * 1000)
            found[f"{name} ({side})"] = round(statistics.median(samples[10:]), 3)
    return found


def main() -> None:
    args = parse()
    url = resolve_url(args)
    use_planner(url)
    sides = {"this": statements(ROOT)}
    if args.baseline_root:
        sides["baseline"] = statements(args.baseline_root)
    engine = create_engine(url, connect_args={"options": "-c plan_cache_mode=force_generic_plan"})
    results: dict[str, object] = {}
    with engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.execute("SELECT id FROM users WHERE email = %s", (TEACHER,))
        teacher = cursor.fetchone()[0]
        for label in ("seed", "copied"):
            if label == "copied":
                connection.execute(text(_COPY_EXAMS), {"copies": args.copies, "teacher": teacher})
                connection.execute(text(_ADD_STATS))
                connection.execute(text("ANALYZE exams"))
                connection.execute(text("ANALYZE exam_stats"))
            exams = connection.execute(text("SELECT count(*) FROM exams")).scalar_one()
            results[f"{exams} exams"] = timings(cursor, sides, teacher, args.runs)
            print(f"{exams} exams: {results[f'{exams} exams']}", file=sys.stderr)
        connection.rollback()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (ANALYZE) exams"))  # the copies' dead rows
        connection.execute(text("VACUUM (ANALYZE) exam_stats"))
    engine.dispose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
