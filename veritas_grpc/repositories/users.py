"""Accounts and profiles. Repositories flush; the unit of work commits."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from veritas_grpc.db.models import StudentProfile, TeacherProfile, User
from veritas_grpc.repositories.conflicts import conflict_on_violation


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
