"""The alert log: alerts numbered per exam, gapless and in commit order, for watches
that resume and catch up after a database restart (issue 10, item 12).

exam_alert_counters holds each exam's last number; ingestion takes the next ones in
the transaction that stores the events (the counter row locked until commit), and
writes one exam_alerts row per alert with the key of its event. Nothing is backfilled:
alerts stored before this revision are not numbered (an exam's first alert after it
is number 1).

Revision ID: 0007_alert_log
Revises: 0006_sign_in_throttles
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0007_alert_log"
down_revision = "0006_sign_in_throttles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exam_alert_counters",
        sa.Column(
            "exam_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "exams.id",
                ondelete="CASCADE",
                name="fk_exam_alert_counters_exam_id_exams",
            ),
            nullable=False,
        ),
        sa.Column("last_sequence", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("exam_id", name="pk_exam_alert_counters"),
    )
    op.create_table(
        "exam_alerts",
        sa.Column("exam_id", UUID(as_uuid=True), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("attempt_id", UUID(as_uuid=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("exam_id", "sequence", name="pk_exam_alerts"),
    )
    op.create_index("ix_exam_alerts_occurred_at", "exam_alerts", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("exam_alerts")
    op.drop_table("exam_alert_counters")
