"""Accommodations and practice exams.

exam_allowances: one student's accommodations at one exam (TeacherService
GrantAllowance), one standing allowance per kind (a partial unique index), each kind's
columns and no other's set (a check). Revoked allowances are kept, with when and by
whom, for the audit of an appeal; the note may describe a disability, so an erasure
deletes the rows (services/data_subjects.py).

exams.is_practice is fixed at creation; exam_attempts.is_practice copies it, so that
every figure and listing over attempts can leave practice attempts out without a join.
exam_attempts.extra_minutes is the extra time the attempt got.

Revision ID: 0016_allowances_and_practice
Revises: 0015_user_search_walk
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0016_allowances_and_practice"
down_revision = "0015_user_search_walk"
branch_labels = None
depends_on = None

KIND_COLUMNS = """(
    kind = 'EXTRA_TIME'
        AND (extra_minutes IS NULL) <> (extra_percent IS NULL)
        AND extra_attempts IS NULL AND window_opens_at IS NULL AND window_closes_at IS NULL
        AND exempt_event_types IS NULL
    OR kind = 'EXTRA_ATTEMPTS'
        AND extra_attempts IS NOT NULL AND extra_minutes IS NULL AND extra_percent IS NULL
        AND window_opens_at IS NULL AND window_closes_at IS NULL AND exempt_event_types IS NULL
    OR kind = 'PERSONAL_WINDOW'
        AND window_opens_at IS NOT NULL AND window_closes_at > window_opens_at
        AND extra_minutes IS NULL AND extra_percent IS NULL AND extra_attempts IS NULL
        AND exempt_event_types IS NULL
    OR kind = 'EVENT_EXEMPTION'
        AND cardinality(exempt_event_types) > 0 AND extra_minutes IS NULL
        AND extra_percent IS NULL AND extra_attempts IS NULL AND window_opens_at IS NULL
        AND window_closes_at IS NULL
)"""


def upgrade() -> None:
    op.add_column(
        "exams", sa.Column("is_practice", sa.Boolean, nullable=False, server_default="false")
    )
    op.add_column(
        "exams",
        sa.Column(
            "required_practice_exam_id",
            UUID(as_uuid=True),
            sa.ForeignKey("exams.id", ondelete="SET NULL"),
        ),
    )
    op.add_column(
        "exam_attempts",
        sa.Column("is_practice", sa.Boolean, nullable=False, server_default="false"),
    )
    op.add_column(
        "exam_attempts",
        sa.Column("extra_minutes", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "exam_allowances",
        sa.Column(
            "id", UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
        ),
        sa.Column(
            "exam_id",
            UUID(as_uuid=True),
            sa.ForeignKey("exams.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "student_id",
            UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("extra_minutes", sa.Integer),
        sa.Column("extra_percent", sa.Integer),
        sa.Column("extra_attempts", sa.Integer),
        sa.Column("window_opens_at", sa.DateTime(timezone=True)),
        sa.Column("window_closes_at", sa.DateTime(timezone=True)),
        sa.Column("exempt_event_types", ARRAY(sa.String(64))),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("granted_by", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column(
            "granted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("grant_request_id", sa.String(64)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_by", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.CheckConstraint(
            "kind IN ('EXTRA_TIME', 'EXTRA_ATTEMPTS', 'PERSONAL_WINDOW', 'EVENT_EXEMPTION')",
            name="kind",
        ),
        sa.CheckConstraint(KIND_COLUMNS, name="kind_columns"),
        sa.CheckConstraint(
            "extra_minutes > 0 AND extra_percent > 0 AND extra_attempts > 0", name="positive"
        ),
        sa.UniqueConstraint(
            "granted_by", "grant_request_id", name="uq_exam_allowances_grant_request"
        ),
    )
    op.create_index(
        "uq_exam_allowances_standing",
        "exam_allowances",
        ["exam_id", "student_id", "kind"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_index("ix_exam_allowances_student_id", "exam_allowances", ["student_id"])


def downgrade() -> None:
    op.drop_table("exam_allowances")
    op.drop_column("exam_attempts", "extra_minutes")
    op.drop_column("exam_attempts", "is_practice")
    op.drop_column("exams", "required_practice_exam_id")
    op.drop_column("exams", "is_practice")
