"""Bulk statements of student imports and password setting. Flush, never commit.

An import of 10,000 rows is a handful of statements: two lookups with = ANY(array), a
multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING for the accounts and another for
their profiles, and an UPDATE ... FROM (VALUES ...) for the changed ones."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, any_, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session

from veritas_grpc.db.models import AuthSession, StudentProfile, User

TEXTS = ARRAY(String)
UUIDS = ARRAY(UUID(as_uuid=True))


@dataclass(frozen=True)
class ExistingAccount:
    id: uuid.UUID
    email: str
    role: str
    full_name: str
    enrollment_id: str | None


class EnrolmentRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def lock_imports(self) -> None:
        """Imports run one at a time (until the transaction ends): two imports of one
        file classify their rows against each other's results, not in parallel."""
        self._session.execute(text("SELECT pg_advisory_xact_lock(hashtext('veritas.import'))"))

    def accounts_by_email(self, emails: Sequence[str]) -> dict[str, ExistingAccount]:
        if not emails:
            return {}
        query = (
            select(User.id, User.email, User.role, User.full_name, StudentProfile.enrollment_id)
            .outerjoin(StudentProfile, StudentProfile.user_id == User.id)
            .where(User.email == any_(bindparam("emails", list(emails), type_=TEXTS)))
        )
        return {
            row.email: ExistingAccount(
                row.id, row.email, row.role, row.full_name, row.enrollment_id
            )
            for row in self._session.execute(query)
        }

    def enrollment_owners(self, enrollment_ids: Sequence[str]) -> dict[str, uuid.UUID]:
        if not enrollment_ids:
            return {}
        wanted = bindparam("ids", list(enrollment_ids), type_=TEXTS)
        query = select(StudentProfile.enrollment_id, StudentProfile.user_id).where(
            StudentProfile.enrollment_id == any_(wanted)
        )
        return {row.enrollment_id: row.user_id for row in self._session.execute(query)}

    def add_students(
        self, students: Sequence[tuple[str, str, str]], password_hash: str
    ) -> dict[str, uuid.UUID]:
        """(email, full name, enrollment id) -> the ids of the accounts made, by e-mail.

        Rows whose e-mail or enrollment id a concurrent writer took meanwhile are left out
        (nothing of them stays). Arrays through unnest: one statement per table whatever
        the row count, with nothing for SQLAlchemy to compile per row."""
        if not students:
            return {}
        made = self._session.execute(
            text(
                "INSERT INTO users (email, full_name, role, password_hash) "
                "SELECT e, n, 'student', :hash "
                "FROM unnest(CAST(:emails AS text[]), CAST(:names AS text[])) AS v(e, n) "
                "ON CONFLICT (email) DO NOTHING RETURNING id, email"
            ),
            {
                "hash": password_hash,
                "emails": [e for e, _, _ in students],
                "names": [n for _, n, _ in students],
            },
        ).all()
        if not made:
            return {}
        ids = {row.email: uuid.UUID(str(row.id)) for row in made}
        enrolment = {e: eid for e, _, eid in students}
        profiled = self._session.execute(
            text(
                "INSERT INTO student_profiles (user_id, enrollment_id) "
                "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:eids AS text[])) "
                "ON CONFLICT (enrollment_id) DO NOTHING RETURNING user_id"
            ),
            {"ids": [str(uid) for uid in ids.values()], "eids": [enrolment[e] for e in ids]},
        ).scalars()
        with_profile = {uuid.UUID(str(uid)) for uid in profiled}
        orphans = [str(uid) for uid in ids.values() if uid not in with_profile]
        if orphans:
            self._session.execute(
                text("DELETE FROM users WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": orphans}
            )
        return {e: uid for e, uid in ids.items() if uid in with_profile}

    def update_students(self, changes: Sequence[tuple[uuid.UUID, str, str]], now: datetime) -> None:
        """(user id, full name, enrollment id): set both, one statement per table.
        The enrollment ids were checked free of other students beforehand."""
        if not changes:
            return
        ids = [uid for uid, _, _ in changes]
        params = {
            "ids": [str(uid) for uid in ids],
            "names": [name for _, name, _ in changes],
            "eids": [eid for _, _, eid in changes],
            "now": now,
        }
        self._session.execute(
            text(
                "UPDATE users AS u SET full_name = v.name, updated_at = :now "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS text[])) AS v(id, name) "
                "WHERE u.id = v.id"
            ),
            params,
        )
        self._session.execute(
            text(
                "UPDATE student_profiles AS p SET enrollment_id = v.eid "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:eids AS text[])) AS v(id, eid) "
                "WHERE p.user_id = v.id AND p.enrollment_id <> v.eid"
            ),
            params,
        )

    def set_password_hash(self, user_id: uuid.UUID, password_hash: str, now: datetime) -> None:
        self._session.execute(
            update(User)
            .where(User.id == user_id)
            .values(password_hash=password_hash, updated_at=now)
            .execution_options(synchronize_session=False)
        )

    def revoke_sessions(self, user_id: uuid.UUID, now: datetime, reason: str) -> int:
        """End every open sign-in session of the account (its refresh tokens and the
        access tokens issued in them stop working: access checks look at the session)."""
        result = self._session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)
