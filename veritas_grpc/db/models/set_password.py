"""One-time set-password tokens (AdminService CreateUser, ResetPassword, ImportStudents;
redeemed by AuthService.SetPassword)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from veritas_grpc.db.base import Base
from veritas_grpc.db.models._columns import created_at, uuid_pk


class SetPasswordToken(Base):
    """Only the SHA-256 of the token's text is stored. A token is open while used_at and
    revoked_at are NULL and expires_at is ahead; a newer token of the account revokes
    the older open ones."""

    __tablename__ = "set_password_tokens"
    __table_args__ = (CheckConstraint("purpose IN ('create', 'reset', 'import')", name="purpose"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    purpose: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
