"""Sign-in throttle buckets keyed by what they count, replacing login_throttles.

login_throttles counted failures per e-mail address only, so five anonymous wrong
passwords locked an account for everyone. sign_in_throttles keeps one counter per
(scope, subject):

- 'account': an e-mail address, failures from every client address (a high limit);
- 'account_address': "e-mail client-address", one source against one account;
- 'address': a client address (an IPv6 /64), failures across accounts;
- 'register': a client address, Register calls.

The throttle state is short-lived (minutes), so neither direction carries rows over:
upgrading or downgrading forgets the counters in force.

Revision ID: 0006_sign_in_throttles
Revises: 0005_event_data_as_json
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_sign_in_throttles"
down_revision = "0005_event_data_as_json"
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.drop_table("login_throttles")
    op.create_table(
        "sign_in_throttles",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("subject", sa.String(400), primary_key=True),
        sa.Column("failure_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("window_started_at", TIMESTAMPTZ, nullable=False),
        sa.Column("locked_until", TIMESTAMPTZ),
        sa.CheckConstraint(
            "scope IN ('account', 'account_address', 'address', 'register')", name="scope"
        ),
    )
    # The purge deletes buckets whose window is over (and whose lock, if any, expired).
    op.create_index(
        "ix_sign_in_throttles_window_started_at", "sign_in_throttles", ["window_started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_sign_in_throttles_window_started_at", table_name="sign_in_throttles")
    op.drop_table("sign_in_throttles")
    op.create_table(
        "login_throttles",
        sa.Column("email", sa.String(254), primary_key=True),
        sa.Column("failure_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("window_started_at", TIMESTAMPTZ, nullable=False),
        sa.Column("locked_until", TIMESTAMPTZ),
    )
