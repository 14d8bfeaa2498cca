"""Accounts and their profiles."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from veritas_grpc.db.base import Base
from veritas_grpc.db.models._columns import counter, created_at, uuid_pk


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('student', 'teacher', 'admin', 'service')", name="role"),
        CheckConstraint("email = lower(email)", name="email_lower"),
        Index("uq_users_email", "email", unique=True),
        Index("ix_users_role_email", "role", "email"),
        # ListUsers' bounded walk in e-mail order, index-only (migration 0015).
        Index(
            "ix_users_email_search",
            "email",
            postgresql_include=["id", "full_name", "role", "is_active"],
        ),
        # ListUsers' enrollment-id matches, each account looked up by key, index-only
        # (migration 0021).
        Index("ix_users_id_search", "id", postgresql_include=["email", "role", "is_active"]),
        # ListUsers' text search (pg_trgm, migration 0010): LIKE '%text%'.
        Index(
            "ix_users_email_trgm",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(100), nullable=False)
    full_name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )
    # Set while the account is deactivated (AdminService.DeactivateUser).
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deactivate_reason: Mapped[str | None] = mapped_column(String(500))

    student_profile: Mapped[StudentProfile | None] = relationship(
        back_populates="user", uselist=False, lazy="joined"
    )


class StudentProfile(Base):
    __tablename__ = "student_profiles"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    enrollment_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    joined_at: Mapped[datetime] = created_at()
    # Running sums over the student's attempts, kept exact (Numeric) so that updating
    # them attempt by attempt equals recomputing them from the attempts.
    finished_count: Mapped[int] = counter()
    graded_count: Mapped[int] = counter()
    passed_count: Mapped[int] = counter()
    percentage_sum: Mapped[Decimal] = mapped_column(
        Numeric(16, 2), nullable=False, server_default=text("0")
    )
    integrity_count: Mapped[int] = counter()
    integrity_sum: Mapped[Decimal] = mapped_column(
        Numeric(16, 4), nullable=False, server_default=text("0")
    )
    flagged_count: Mapped[int] = counter()

    user: Mapped[User] = relationship(back_populates="student_profile")


class TeacherProfile(Base):
    __tablename__ = "teacher_profiles"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    department: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_at()


# ListUsers' text search over lower-cased names and enrollment ids (migration 0010).
Index(
    "ix_users_full_name_trgm",
    func.lower(User.full_name).label("lower_full_name"),
    postgresql_using="gin",
    postgresql_ops={"lower_full_name": "gin_trgm_ops"},
)
Index(
    "ix_student_profiles_enrollment_id_trgm",
    func.lower(StudentProfile.enrollment_id).label("lower_enrollment_id"),
    postgresql_using="gin",
    postgresql_ops={"lower_enrollment_id": "gin_trgm_ops"},
)
