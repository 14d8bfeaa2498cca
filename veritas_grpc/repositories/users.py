"""Accounts and profiles. Repositories flush; the unit of work commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, func, select, union
from sqlalchemy.orm import Session

from veritas_grpc.db.models import AuditLog, StudentProfile, TeacherProfile, User
from veritas_grpc.repositories.conflicts import conflict_on_violation


def contains_pattern(text: str) -> str:
    """A LIKE pattern for values containing `text` (lower-cased), its wildcards escaped."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UserRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, user_id: uuid.UUID) -> User | None:
        return self._session.get(User, user_id)

    def get_by_email(self, email: str) -> User | None:
        return self._session.scalar(select(User).where(User.email == email.lower()))

    def email_taken(self, email: str) -> bool:
        return self._session.scalar(select(User.id).where(User.email == email.lower())) is not None

    def enrollment_taken(self, enrollment_id: str) -> bool:
        query = select(StudentProfile.user_id).where(StudentProfile.enrollment_id == enrollment_id)
        return self._session.scalar(query) is not None

    def add(self, user: User) -> User:
        """Conflict: the e-mail address is taken (a concurrent registration won)."""
        self._session.add(user)
        with conflict_on_violation("an account with this e-mail already exists"):
            self._session.flush()
        return user

    def add_student_profile(self, user: User, enrollment_id: str) -> StudentProfile:
        """Conflict: the enrollment id is taken (a concurrent registration won)."""
        profile = StudentProfile(user_id=user.id, enrollment_id=enrollment_id)
        self._session.add(profile)
        with conflict_on_violation("this enrollment id is already registered"):
            self._session.flush()
        self._session.refresh(user)
        return profile

    def add_teacher_profile(self, user: User) -> TeacherProfile:
        profile = TeacherProfile(user_id=user.id)
        self._session.add(profile)
        self._session.flush()
        return profile

    def get_for_update(self, user_id: uuid.UUID) -> User | None:
        """The account, row-locked until the transaction ends (admin changes serialise)."""
        return self._session.scalar(select(User).where(User.id == user_id).with_for_update(of=User))

    def save(self, user: User) -> None:
        """Flush changes made to a loaded account. Conflict: a unique value is taken."""
        with conflict_on_violation("this enrollment id is already registered"):
            self._session.flush()

    def search(
        self,
        role: str | None,
        active: bool | None,
        text: str | None,
        after_email: str | None,
        limit: int,
    ) -> list[User]:
        """Accounts in e-mail order after `after_email`, of a role, in an active state,
        whose e-mail, full name or enrollment id contains `text` (case-insensitive).

        With a text: two branches, each ordered by e-mail and limited, merged. The
        account's own columns (the e-mail and name trigram indexes, OR-ed in a bitmap)
        and the enrollment id (its trigram index, joined to the account) are apart, so
        that the planner picks for each either the trigram indexes (few matches) or the
        e-mail order (many: the first `limit` come soon), which one query OR-ing across
        the two tables would not let it do."""

        def filtered(query: Select[tuple[uuid.UUID, str]]) -> Select[tuple[uuid.UUID, str]]:
            if role is not None:
                query = query.where(User.role == role)
            if active is not None:
                query = query.where(User.is_active.is_(active))
            if after_email is not None:
                query = query.where(User.email > after_email)
            return query.order_by(User.email).limit(limit)

        if not text:
            ids = filtered(select(User.id, User.email)).subquery()
        else:
            pattern = contains_pattern(text)
            own = filtered(
                select(User.id, User.email).where(
                    User.email.like(pattern, escape="\\")
                    | func.lower(User.full_name).like(pattern, escape="\\")
                )
            )
            enrolled = filtered(
                select(User.id, User.email)
                .join(StudentProfile, StudentProfile.user_id == User.id)
                .where(func.lower(StudentProfile.enrollment_id).like(pattern, escape="\\"))
            )
            ids = union(own, enrolled).subquery()
        query = select(User).join(ids, ids.c.id == User.id).order_by(User.email).limit(limit)
        return list(self._session.scalars(query).unique())

    def last_sign_in(self, user_id: uuid.UUID) -> datetime | None:
        """When the account last signed in, from the audit trail: sessions are purged
        once expired, the trail keeps every Login (indexed by actor and time)."""
        return self._session.scalar(
            select(func.max(AuditLog.occurred_at)).where(
                AuditLog.actor_id == user_id,
                AuditLog.action == "auth.login",
                AuditLog.outcome == "success",
            )
        )
