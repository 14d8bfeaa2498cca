"""Each exam's students with their names, kept by triggers.

GetExamAnalytics lists an exam's students by name, a page at a time. Without a list of
them, the page either looked up and sorted every student's name (the cost of the exam's
size) or walked all accounts in name order asking each whether it had an attempt (the
cost of accounts ÷ students per student listed): 10–11 ms of SQL for a page of 100 of
a 5,000-student exam among 100,000 accounts (docs/BENCH_SCALE.md). This table is the
exam's students in name order, by index: a page reads a page of rows.

Triggers keep it, so that no writer (an older server during a rolling upgrade, an import,
a script) can leave it behind: the first attempt of a student at a non-practice exam adds
the row (attempts are never deleted; the rows go with their exam or account), and a
change of an account's full name (a rename by UpdateUser or ImportStudents, an erasure's
blanking) is copied to that account's rows. The name is a copy for the index's sake:
users.full_name stays the account's one name.

The backfill reads every attempt once (the seed's 1,000,000 attempts: 36 s on the 2-core
reference machine, with both indexes). It locks exams, users and exam_attempts against
writes until it commits (as creating the triggers and the foreign keys would), so
nothing is written between the backfill and the triggers: exams, accounts, attempts and
ingestion's counters wait for it (docs/OPERATIONS.md, "Upgrading").

Revision ID: 0020_exam_students
Revises: 0019_users_by_name
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0020_exam_students"
down_revision = "0019_users_by_name"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every lock the migration needs, first and in one order (the new table's foreign keys
    # would take exams' and users', the triggers exam_attempts' and users'), rather than
    # one at a time behind writers that hold another.
    op.execute("LOCK TABLE exams, users, exam_attempts IN SHARE ROW EXCLUSIVE MODE")
    op.create_table(
        "exam_students",
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
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("exam_id", "student_id", name="pk_exam_students"),
    )
    op.execute(
        """
        -- FOR SHARE: a rename not committed yet is waited for (its name is the one read),
        -- and a rename after this waits for the row to exist (its trigger then renames it).
        CREATE FUNCTION exam_students_add() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT NEW.is_practice THEN
                INSERT INTO exam_students (exam_id, student_id, full_name)
                SELECT NEW.exam_id, NEW.student_id, u.full_name FROM users u
                WHERE u.id = NEW.student_id FOR SHARE
                ON CONFLICT (exam_id, student_id) DO NOTHING;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER exam_students_add AFTER INSERT ON exam_attempts
        FOR EACH ROW EXECUTE FUNCTION exam_students_add();

        CREATE FUNCTION exam_students_rename() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE exam_students SET full_name = NEW.full_name WHERE student_id = NEW.id;
            RETURN NULL;
        END $$;
        CREATE TRIGGER exam_students_rename AFTER UPDATE OF full_name ON users
        FOR EACH ROW WHEN (OLD.full_name IS DISTINCT FROM NEW.full_name)
        EXECUTE FUNCTION exam_students_rename();
        """
    )
    op.execute(
        "INSERT INTO exam_students (exam_id, student_id, full_name) "
        "SELECT s.exam_id, s.student_id, u.full_name "
        "FROM (SELECT DISTINCT exam_id, student_id FROM exam_attempts WHERE NOT is_practice) s "
        "JOIN users u ON u.id = s.student_id"
    )
    op.create_index(
        "ix_exam_students_name", "exam_students", ["exam_id", "full_name", "student_id"]
    )
    # A rename (and a deleted account's cascade) finds the account's rows by this one.
    op.create_index("ix_exam_students_student_id", "exam_students", ["student_id"])
    op.execute("ANALYZE exam_students")


def downgrade() -> None:
    op.execute("DROP TRIGGER exam_students_rename ON users")
    op.execute("DROP FUNCTION exam_students_rename()")
    op.execute("DROP TRIGGER exam_students_add ON exam_attempts")
    op.execute("DROP FUNCTION exam_students_add()")
    op.drop_table("exam_students")
