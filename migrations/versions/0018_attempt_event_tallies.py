"""Each attempt's events tallied by type and severity, kept by ingestion.

GetAttemptMonitoring's summary counted the attempt's events on every read (36–49 ms for a
50,000-event attempt at the seed's scale, docs/BENCH_SCALE.md), and its timeline, like
ListEvents, was planned over every daily partition. Ingestion now moves one row per
(attempt, event type, severity) in the transaction that stores the events, as it moves
the attempt's counters: a count, the anomalies, and the first and last occur time. The
summary reads those rows; the span bounds the timeline's query to the partitions that
can hold the attempt's events. Readers trust the rows only while their counts add up to
the attempt's event_count (moved in the same transaction), so rows missing for any
reason (events written by an older server during this migration, SQL by hand) make the
readers count as before rather than answer short.

The backfill reads every stored event once: 186 s for 10,000,000 events on the 2-core
reference machine (docs/BENCH_SCALE.md); servers may keep ingesting meanwhile (what they
store uncounted here leaves those attempts' tallies short, so not trusted). Erasure
deletes an erased student's tallies with the events; the foreign key cascades if an
attempt is ever deleted.

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
        sa.Column(
            "attempt_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("exam_attempts.id", ondelete="CASCADE"),
            nullable=False,
        ),
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
        "INSERT INTO attempt_event_tallies SELECT attempt_id, event_type, severity, "
        "count(*), count(*) FILTER (WHERE is_anomaly), min(occurred_at), max(occurred_at) "
        "FROM monitoring_events GROUP BY attempt_id, event_type, severity"
    )


def downgrade() -> None:
    op.drop_table("attempt_event_tallies")
