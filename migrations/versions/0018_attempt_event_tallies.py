"""Each attempt's events tallied by type and severity, kept by ingestion.

GetAttemptMonitoring's summary counted the attempt's events on every read (36–49 ms for a
50,000-event attempt at the seed's scale, docs/BENCH_SCALE.md), and its timeline, like
ListEvents, was planned over every daily partition. Ingestion now moves one row per
(attempt, event type, severity) in the transaction that stores the events, as it moves
the attempt's counters: a count, the anomalies, and the first and last occur time. The
summary reads those rows; the span bounds the timeline's query to the partitions that
can hold the attempt's events. Readers trust the rows only while their counts add up to
the attempt's event_count (moved in the same transaction): events counted but not
tallied (stored by an older server during this migration) make the readers count as
before rather than answer short. Events in neither (an INSERT by hand) may fall outside
the tallied span and not be listed.

The backfill reads every stored event once: 186 s for 9,500,000 events on the 2-core
reference machine (docs/BENCH_SCALE.md). It locks nothing that ingestion or attempts
write (no foreign key to exam_attempts, whose creation would lock that table for the
whole backfill; attempts are never deleted, and erasure deletes an erased student's
tallies with the events), so servers may keep running: what they store meanwhile
leaves those attempts' tallies short, so not trusted (docs/OPERATIONS.md, "Upgrading",
recounts them).

Like the attempts' counters, the tallies keep counting events that retention drops
later: the summary counts what was recorded, the timeline lists what is still stored.

Revision ID: 0018_attempt_event_tallies
Revises: 0017_practice_attempt_ends
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018_attempt_event_tallies"
down_revision = "0017_practice_attempt_ends"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_event_tallies",
        sa.Column("attempt_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("anomaly_count", sa.BigInteger(), nullable=False),
        sa.Column("first_occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "attempt_id", "event_type", "severity", name="pk_attempt_event_tallies"
        ),
    )
    op.execute(
        "INSERT INTO attempt_event_tallies (attempt_id, event_type, severity, event_count, "
        "anomaly_count, first_occurred_at, last_occurred_at) "
        "SELECT attempt_id, event_type, severity, count(*), count(*) FILTER (WHERE is_anomaly), "
        "min(occurred_at), max(occurred_at) "
        "FROM monitoring_events GROUP BY attempt_id, event_type, severity"
    )


def downgrade() -> None:
    op.drop_table("attempt_event_tallies")
