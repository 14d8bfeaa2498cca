"""What leaving practice attempts out costs GetSystemStats' refresh and the risk summary.

Run on a database loaded by `bench_oversight.py --load-only` (its attempts, and events
spread over 30 UTC days in groups of 40 per made-up attempt id), in this process:
the figures' parts (attempts by status, events received in the last hour and day,
today's events, the critical events of the last hour and day) and the whole snapshot
refresh (`Oversight.compute(keep_days=True)`), --rounds times each, median ms. With
--practice N it first makes N practice attempts out of the made-up attempt ids of the
last day's events (SUBMITTED, ended within the day: each has its ~40 events), so that
the subtraction finds and counts real practice events. Run it with the code before and
after the change on one database (PYTHONPATH at the other tree) to compare.

Usage (from scripts/): python bench_practice_figures.py --database NAME
    [--data-dir /tmp/oversight-bench] [--rounds 10] [--practice 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

MAKE_PRACTICE = """
WITH groups AS (
    SELECT DISTINCT attempt_id FROM monitoring_events
    WHERE occurred_at >= now() - interval '1 day'
    LIMIT :n
), one AS (
    SELECT (SELECT id FROM exams ORDER BY id LIMIT 1) AS exam_id,
           (SELECT id FROM users WHERE role = 'student' ORDER BY id LIMIT 1) AS student_id
)
INSERT INTO exam_attempts (id, exam_id, student_id, attempt_number, status, started_at,
    deadline_at, ended_at, is_practice)
SELECT g.attempt_id, one.exam_id, one.student_id, 1000 + row_number() OVER (),
       'SUBMITTED', now() - interval '1 day', now(), now() - random() * interval '1 day', true
FROM groups g, one
ON CONFLICT DO NOTHING
"""


def _median_ms(call: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/oversight-bench"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--practice", type=int, default=0)
    args = parser.parse_args()

    from veritas_grpc.db.embedded import start_embedded
    from veritas_grpc.db.engine import make_engine, make_session_factory
    from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
    from veritas_grpc.services.oversight import Oversight

    server = start_embedded(args.data_dir, database="postgres")
    url = make_url(server).set(database=args.database).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=2)
    if args.practice:
        with engine.begin() as connection:
            made = connection.execute(text(MAKE_PRACTICE), {"n": args.practice}).rowcount
            connection.execute(text("ANALYZE exam_attempts"))
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    day = timedelta(days=1)

    def part(read: Callable[[SqlAlchemyUnitOfWork], object]) -> Callable[[], object]:
        def run() -> object:
            with SqlAlchemyUnitOfWork(factory) as uow:
                return read(uow)

        return run

    parts = {
        "attempts_by_status": part(lambda u: u.oversight.attempts_by_status()),
        "events_last_hour": part(
            lambda u: u.oversight.events_received_since(now - timedelta(hours=1), day)
        ),
        "events_last_day": part(lambda u: u.oversight.events_received_since(now - day, day)),
        "events_today": part(lambda u: u.oversight.events_on(now.date())),
        "critical_last_hour": part(lambda u: u.events.critical_since(now - timedelta(hours=1))),
        "critical_last_day": part(lambda u: u.events.critical_since(now - day)),
    }
    oversight = Oversight(
        lambda: SqlAlchemyUnitOfWork(factory), lambda: datetime.now(UTC), timedelta(seconds=60), day
    )
    oversight.compute(keep_days=True)  # the closed days counted and kept once
    import veritas_grpc

    result: dict[str, object] = {"code": str(Path(veritas_grpc.__file__).parent.parent)}
    result["practice_attempts_made"] = made if args.practice else 0
    result |= {name: _median_ms(call, args.rounds) for name, call in parts.items()}
    result["refresh_kept_days"] = _median_ms(lambda: oversight.compute(True), args.rounds)
    result["counts"] = {
        name: call() for name, call in parts.items() if name != "attempts_by_status"
    }
    engine.dispose()
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
