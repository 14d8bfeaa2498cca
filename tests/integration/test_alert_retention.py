"""The alert log's rows go with their events at retention, in small batches (issue 10,
item 12)."""

import uuid
from datetime import date

from sqlalchemy import text

from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services import partition_upkeep


def test_alert_rows_older_than_the_cutoff_are_deleted_in_batches(database_url):
    engine = make_engine(database_url, pool_size=2)
    session_factory = make_session_factory(engine)
    exam = uuid.uuid4()
    # Far in the past, so that no other test's alerts are older than the cutoff.
    with session_factory() as session:
        session.execute(
            text(
                "INSERT INTO exam_alerts (exam_id, sequence, attempt_id, occurred_at, event_id) "
                "SELECT :exam, n, gen_random_uuid(), "
                "CASE WHEN n <= 5 THEN timestamptz '1999-12-31 23:59:59+00' "
                "ELSE timestamptz '2000-01-01 00:00:00+00' END, gen_random_uuid() "
                "FROM generate_series(1, 6) AS n"
            ),
            {"exam": exam},
        )
        session.commit()
    try:
        deleted = partition_upkeep.delete_alerts_before(
            lambda: SqlAlchemyUnitOfWork(session_factory), date(2000, 1, 1), batch=2
        )
        with session_factory() as session:
            left = session.scalars(
                text("SELECT sequence FROM exam_alerts WHERE exam_id = :exam"), {"exam": exam}
            ).all()
        assert deleted == 5 and left == [6]
    finally:
        with session_factory() as session:
            session.execute(text("DELETE FROM exam_alerts WHERE exam_id = :exam"), {"exam": exam})
            session.commit()
        engine.dispose()
