"""Exams, their sharing, attempts, and the denormalised figures dashboards read.

Revision ID: 0002_exams_attempts
Revises: 0001_foundation
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_exams_attempts"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TIMESTAMPTZ = sa.DateTime(timezone=True)
SCORE = sa.Numeric(8, 2)
SCORE_SUM = sa.Numeric(16, 2)
INTEGRITY = sa.Numeric(5, 4)
INTEGRITY_SUM = sa.Numeric(16, 4)
LABELS = "('SAFE', 'INCAPABLE', 'COPY', 'NO_INTEREST')"


def _uuid_pk() -> sa.Column:
    return sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()"))


def _now(name: str) -> sa.Column:
    return sa.Column(name, TIMESTAMPTZ, nullable=False, server_default=sa.func.now())


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer, nullable=False, server_default=sa.text("0"))


def _user_fk(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "exams",
        _uuid_pk(),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("max_score", SCORE, nullable=False),
        sa.Column("pass_score", SCORE, nullable=False),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("opens_at", TIMESTAMPTZ),
        sa.Column("closes_at", TIMESTAMPTZ),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("status", sa.String(16), nullable=False, server_default="DRAFT"),
        _user_fk("created_by"),
        sa.Column("settings", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("create_request_id", sa.String(64)),
        _now("created_at"),
        _now("updated_at"),
        sa.Column("published_at", TIMESTAMPTZ),
        sa.Column("archived_at", TIMESTAMPTZ),
        sa.CheckConstraint("status IN ('DRAFT', 'PUBLISHED', 'ARCHIVED')", name="status"),
        sa.CheckConstraint("max_score > 0", name="max_score_positive"),
        sa.CheckConstraint("pass_score >= 0 AND pass_score <= max_score", name="pass_score_range"),
        sa.CheckConstraint("duration_minutes BETWEEN 1 AND 1440", name="duration_range"),
        sa.CheckConstraint("max_attempts BETWEEN 1 AND 100", name="max_attempts_range"),
        sa.CheckConstraint(
            "closes_at IS NULL OR opens_at IS NULL OR closes_at > opens_at", name="window"
        ),
        sa.UniqueConstraint("created_by", "create_request_id", name="uq_exams_create_request"),
    )
    op.create_index("ix_exams_created_by_created_at", "exams", ["created_by", "created_at"])
    op.create_index(
        "ix_exams_published_title",
        "exams",
        ["title", "id"],
        postgresql_where=sa.text("status = 'PUBLISHED'"),
    )

    op.create_table(
        "exam_stats",
        sa.Column("exam_id", UUID, sa.ForeignKey("exams.id", ondelete="CASCADE"), primary_key=True),
        _counter("attempt_count"),
        _counter("student_count"),
        _counter("finished_count"),
        _counter("graded_count"),
        sa.Column("score_sum", SCORE_SUM, nullable=False, server_default=sa.text("0")),
        _counter("passed_count"),
        _counter("integrity_count"),
        sa.Column("integrity_sum", INTEGRITY_SUM, nullable=False, server_default=sa.text("0")),
        _counter("flagged_count"),
        _counter("high_risk_count"),
        _counter("safe_count"),
        _counter("incapable_count"),
        _counter("copy_count"),
        _counter("no_interest_count"),
    )

    op.create_table(
        "teacher_exam_permissions",
        _uuid_pk(),
        sa.Column("exam_id", UUID, sa.ForeignKey("exams.id", ondelete="CASCADE"), nullable=False),
        _user_fk("teacher_id"),
        sa.Column("level", sa.String(8), nullable=False),
        _user_fk("granted_by"),
        _now("granted_at"),
        sa.CheckConstraint("level IN ('VIEW', 'MANAGE')", name="level"),
        sa.UniqueConstraint(
            "exam_id", "teacher_id", name="uq_teacher_exam_permissions_exam_teacher"
        ),
    )
    op.create_index(
        "ix_teacher_exam_permissions_teacher_id", "teacher_exam_permissions", ["teacher_id"]
    )

    op.create_table(
        "exam_attempts",
        _uuid_pk(),
        sa.Column("exam_id", UUID, sa.ForeignKey("exams.id", ondelete="CASCADE"), nullable=False),
        _user_fk("student_id"),
        sa.Column("attempt_number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="IN_PROGRESS"),
        _now("started_at"),
        sa.Column("deadline_at", TIMESTAMPTZ, nullable=False),
        sa.Column("ended_at", TIMESTAMPTZ),
        sa.Column("score", SCORE),
        sa.Column("percentage", sa.Numeric(5, 2)),
        sa.Column("passed", sa.Boolean),
        sa.Column("graded_at", TIMESTAMPTZ),
        sa.Column("graded_by", UUID, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("integrity_score", INTEGRITY),
        sa.Column("dropout_label", sa.String(16)),
        sa.Column("flagged", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("flagged_at", TIMESTAMPTZ),
        sa.Column("event_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("anomaly_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("critical_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        _now("updated_at"),
        sa.CheckConstraint(
            "status IN ('IN_PROGRESS', 'SUBMITTED', 'ABANDONED', 'TIMED_OUT')", name="status"
        ),
        sa.CheckConstraint(f"dropout_label IS NULL OR dropout_label IN {LABELS}", name="label"),
        sa.CheckConstraint("integrity_score BETWEEN 0 AND 1", name="integrity_range"),
        sa.CheckConstraint("attempt_number >= 1", name="attempt_number_positive"),
        sa.UniqueConstraint(
            "exam_id", "student_id", "attempt_number", name="uq_exam_attempts_number"
        ),
    )
    # At most one attempt in progress per student and exam, whatever the races.
    op.create_index(
        "uq_exam_attempts_one_in_progress",
        "exam_attempts",
        ["student_id", "exam_id"],
        unique=True,
        postgresql_where=sa.text("status = 'IN_PROGRESS'"),
    )
    op.create_index(
        "ix_exam_attempts_student_started", "exam_attempts", ["student_id", "started_at"]
    )
    op.create_index("ix_exam_attempts_exam_student", "exam_attempts", ["exam_id", "student_id"])
    op.create_index(
        "ix_exam_attempts_exam_flagged",
        "exam_attempts",
        ["exam_id", "flagged_at"],
        postgresql_where=sa.text("flagged"),
    )
    op.create_index(
        "ix_exam_attempts_in_progress_deadline",
        "exam_attempts",
        ["deadline_at"],
        postgresql_where=sa.text("status = 'IN_PROGRESS'"),
    )
    # The status machine holds whatever writes the table: a finished attempt is final.
    op.execute(
        """
        CREATE FUNCTION exam_attempts_status_machine() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status IS DISTINCT FROM OLD.status
               AND (OLD.status <> 'IN_PROGRESS' OR NEW.status = 'IN_PROGRESS') THEN
                RAISE EXCEPTION 'attempt status cannot change from % to %', OLD.status, NEW.status
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$;
        """
    )
    op.execute(
        """
        CREATE TRIGGER exam_attempts_status_machine
        BEFORE UPDATE OF status ON exam_attempts
        FOR EACH ROW EXECUTE FUNCTION exam_attempts_status_machine();
        """
    )

    for name in ("finished_count", "graded_count", "passed_count", "integrity_count"):
        op.add_column("student_profiles", _counter(name))
    op.add_column(
        "student_profiles",
        sa.Column("percentage_sum", SCORE_SUM, nullable=False, server_default=sa.text("0")),
    )
    op.add_column(
        "student_profiles",
        sa.Column("integrity_sum", INTEGRITY_SUM, nullable=False, server_default=sa.text("0")),
    )
    op.add_column("student_profiles", _counter("flagged_count"))

    op.create_table(
        "performance_metrics",
        sa.Column(
            "student_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
        ),
        _counter("exams_taken"),
        _counter("exams_passed"),
        sa.Column("average_score", sa.Numeric(5, 2)),
        sa.Column("average_integrity", INTEGRITY),
        sa.Column("latest_lmi", sa.Float),
        sa.Column("lmi_trend", sa.String(8)),
        sa.Column("risk_label", sa.String(16)),
        sa.Column("flagged", sa.Boolean, nullable=False, server_default=sa.text("false")),
        _now("updated_at"),
        sa.CheckConstraint(f"risk_label IS NULL OR risk_label IN {LABELS}", name="label"),
        sa.CheckConstraint(
            "lmi_trend IS NULL OR lmi_trend IN ('RISING', 'STEADY', 'FALLING')", name="trend"
        ),
    )


def downgrade() -> None:
    op.drop_table("performance_metrics")
    for name in (
        "flagged_count",
        "integrity_sum",
        "percentage_sum",
        "integrity_count",
        "passed_count",
        "graded_count",
        "finished_count",
    ):
        op.drop_column("student_profiles", name)
    op.execute("DROP TRIGGER IF EXISTS exam_attempts_status_machine ON exam_attempts")
    op.execute("DROP FUNCTION IF EXISTS exam_attempts_status_machine()")
    op.drop_table("exam_attempts")
    op.drop_table("teacher_exam_permissions")
    op.drop_table("exam_stats")
    op.drop_table("exams")
