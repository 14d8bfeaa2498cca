"""Exam-day storage parameters: fill factor and row-count autovacuum triggers for every
daily partition of monitoring_events and for audit_logs (the values and their reasons
in veritas_grpc/db/storage.py; measured in docs/BENCH_STORAGE.md).

A partitioned table takes no storage parameters and its partitions inherit none, so they
are set on each partition that exists here; partitions made later get them when the
partition upkeep creates them. SET of storage parameters takes a SHARE UPDATE EXCLUSIVE
lock: inserts go on meanwhile. Only new pages are filled to the new fill factor.

Revision ID: 0014_exam_day_storage
Revises: 0013_analysis_queue
Create Date: 2026-12-01
"""

from alembic import op
from sqlalchemy import text

from veritas_grpc.db.storage import AUDIT_LOG_STORAGE, EVENT_PARTITION_STORAGE, storage_clause

revision = "0014_exam_day_storage"
down_revision = "0013_analysis_queue"
branch_labels = None
depends_on = None

PARTITIONS = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'monitoring_events'::regclass ORDER BY 1"
)


def _partitions() -> list[str]:
    return list(op.get_bind().scalars(text(PARTITIONS)))


def upgrade() -> None:
    for name in _partitions():
        op.execute(f"ALTER TABLE {name} SET ({storage_clause(EVENT_PARTITION_STORAGE)})")
    op.execute(f"ALTER TABLE audit_logs SET ({storage_clause(AUDIT_LOG_STORAGE)})")


def downgrade() -> None:
    for name in _partitions():
        op.execute(f"ALTER TABLE {name} RESET ({', '.join(EVENT_PARTITION_STORAGE)})")
    op.execute(f"ALTER TABLE audit_logs RESET ({', '.join(AUDIT_LOG_STORAGE)})")
