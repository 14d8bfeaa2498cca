"""Monitoring events: append-only, range-partitioned by occurred_at (one partition a day).

Revision ID: 0003_monitoring_events
Revises: 0002_exams_attempts
Create Date: 2026-11-29
"""

from datetime import UTC, datetime, timedelta

from alembic import op

revision = "0003_monitoring_events"
down_revision = "0002_exams_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE monitoring_events (
            attempt_id uuid NOT NULL,
            occurred_at timestamptz NOT NULL,
            event_id uuid NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            event_type varchar(64) NOT NULL,
            category varchar(16) NOT NULL,
            severity varchar(8) NOT NULL,
            is_anomaly boolean NOT NULL DEFAULT false,
            description text NOT NULL DEFAULT '',
            detector_name varchar(64) NOT NULL DEFAULT '',
            detector_version varchar(32) NOT NULL DEFAULT '',
            detector_confidence real,
            data jsonb,
            sent_by uuid,
            CONSTRAINT pk_monitoring_events PRIMARY KEY (attempt_id, occurred_at, event_id),
            CONSTRAINT ck_monitoring_events_category CHECK (category IN ('INTEGRITY', 'TECHNICAL')),
            CONSTRAINT ck_monitoring_events_severity
                CHECK (severity IN ('INFO', 'WARNING', 'CRITICAL'))
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    # Anomalies of an attempt in time order: the timeline filter teachers use most.
    op.execute(
        "CREATE INDEX ix_monitoring_events_anomalies ON monitoring_events "
        "(attempt_id, occurred_at) WHERE is_anomaly"
    )
    today = datetime.now(UTC).date()
    for offset in range(-1, 8):
        day = today + timedelta(days=offset)
        op.execute(
            f"CREATE TABLE monitoring_events_p{day:%Y%m%d} PARTITION OF monitoring_events "
            f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') "
            f"TO ('{(day + timedelta(days=1)).isoformat()} 00:00:00+00')"
        )


def downgrade() -> None:
    op.execute("DROP TABLE monitoring_events")  # and every partition with it
