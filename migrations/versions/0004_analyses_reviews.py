"""Behaviour analyses (versioned, one current per attempt) and reviewers' decisions.

Revision ID: 0004_analyses_reviews
Revises: 0003_monitoring_events
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_analyses_reviews"
down_revision = "0003_monitoring_events"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TIMESTAMPTZ = sa.DateTime(timezone=True)
LABELS = "('SAFE', 'INCAPABLE', 'COPY', 'NO_INTEREST')"


def _uuid_pk() -> sa.Column:
    return sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()"))


def _attempt_fk() -> sa.Column:
    return sa.Column(
        "attempt_id", UUID, sa.ForeignKey("exam_attempts.id", ondelete="CASCADE"), nullable=False
    )


def _reviewer_fk() -> sa.Column:
    return sa.Column(
        "reviewer_id", UUID, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )


def upgrade() -> None:
    op.create_table(
        "behavior_analyses",
        _uuid_pk(),
        _attempt_fk(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("is_current", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("integrity_score", sa.Numeric(5, 4), nullable=False),
        sa.Column("lmi_score", sa.Float),
        sa.Column("dropout_label", sa.String(16)),
        sa.Column("llm_summary", sa.Text, nullable=False, server_default=""),
        sa.Column("llm_reasoning", sa.Text, nullable=False, server_default=""),
        sa.Column(
            "recommendations", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'")
        ),
        sa.Column(
            "contributions", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'")
        ),
        sa.Column("model_name", sa.String(100), nullable=False, server_default=""),
        sa.Column("model_version", sa.String(50), nullable=False, server_default=""),
        sa.Column("request_id", sa.String(64)),
        sa.Column("created_by", UUID, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("source IN ('EXTERNAL', 'RULES')", name="source"),
        sa.CheckConstraint("integrity_score BETWEEN 0 AND 1", name="integrity_range"),
        sa.CheckConstraint(f"dropout_label IS NULL OR dropout_label IN {LABELS}", name="label"),
        sa.UniqueConstraint("attempt_id", "version", name="uq_behavior_analyses_version"),
        sa.UniqueConstraint("attempt_id", "request_id", name="uq_behavior_analyses_request"),
    )
    op.create_index(
        "uq_behavior_analyses_current",
        "behavior_analyses",
        ["attempt_id"],
        unique=True,
        postgresql_where=sa.text("is_current"),
    )

    op.create_table(
        "event_reviews",
        _uuid_pk(),
        _attempt_fk(),
        sa.Column("event_id", UUID, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        _reviewer_fk(),
        sa.Column("reviewed_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("decision IN ('CONFIRMED', 'DISMISSED')", name="decision"),
        sa.UniqueConstraint("attempt_id", "event_id", name="uq_event_reviews_event"),
    )
    op.create_table(
        "attempt_reviews",
        _uuid_pk(),
        _attempt_fk(),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        _reviewer_fk(),
        sa.Column("reviewed_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("outcome IN ('CLEARED', 'VIOLATION')", name="outcome"),
    )
    op.create_index("ix_attempt_reviews_attempt_id", "attempt_reviews", ["attempt_id"])

    for band in ("good", "watch", "at_risk"):
        op.add_column(
            "exam_stats",
            sa.Column(
                f"integrity_{band}_count", sa.Integer, nullable=False, server_default=sa.text("0")
            ),
        )
    op.add_column("exam_attempts", sa.Column("review_outcome", sa.String(16)))
    op.add_column(
        "exam_attempts",
        sa.Column("confirmed_events", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_check_constraint(
        "review_outcome",
        "exam_attempts",
        "review_outcome IS NULL OR review_outcome IN ('CLEARED', 'VIOLATION')",
    )
    # The admin's risk summary counts recent CRITICAL events.
    op.execute(
        "CREATE INDEX ix_monitoring_events_critical ON monitoring_events (occurred_at) "
        "WHERE severity = 'CRITICAL'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_monitoring_events_critical")
    op.drop_constraint("review_outcome", "exam_attempts", type_="check")
    op.drop_column("exam_attempts", "confirmed_events")
    op.drop_column("exam_attempts", "review_outcome")
    for band in ("good", "watch", "at_risk"):
        op.drop_column("exam_stats", f"integrity_{band}_count")
    op.drop_table("attempt_reviews")
    op.drop_table("event_reviews")
    op.drop_table("behavior_analyses")
