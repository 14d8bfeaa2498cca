"""Event payloads as json, kept exactly as the agent sent them.

jsonb re-parsed every payload on insert (CPU on the hot path), refused some valid JSON
(\\u0000, numbers beyond numeric's range) and gave back normalized text (1e-300 written
out in full: a payload could grow a hundredfold on the way out). No query reads inside
the payload, and json still has the -> and ->> operators should one ever need to.

Revision ID: 0005_event_data_as_json
Revises: 0004_analyses_reviews
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005_event_data_as_json"
down_revision = "0004_analyses_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rewrites every partition under an exclusive lock: ingestion waits for it, so run
    # it before the server starts (`veritas migrate`), not during an exam.
    op.execute("ALTER TABLE monitoring_events ALTER COLUMN data TYPE json USING data::json")


def downgrade() -> None:
    # Payloads jsonb refuses (\u0000, numbers out of numeric's range) cannot go back.
    op.execute("ALTER TABLE monitoring_events ALTER COLUMN data TYPE jsonb USING data::jsonb")
