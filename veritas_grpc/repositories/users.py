"""Accounts and profiles. Repositories flush; the unit of work commits."""

from __future__ import annotations

import functools
import heapq
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnCollection,
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from veritas_grpc.db.models import AuditLog, StudentProfile, TeacherProfile, User
from veritas_grpc.domain.identity import AccountView, Role
from veritas_grpc.repositories.conflicts import conflict_on_violation

# How many accounts a text search reads in e-mail order, or matching profiles it takes
# from the trigram index, before it turns to the other way (UserRepository.search).
# About sqrt(page size × accounts): a walk that finds too few matches in 2,000 accounts
# means too few match for the sorted matches to cost much more. docs/BENCH_ADMIN.md.
SEARCH_READ_LIMIT = 2000


def contains_pattern(text: str) -> str:
    """A LIKE pattern for values containing `text` (lower-cased), its wildcards escaped."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


Row = tuple[uuid.UUID, str]
_VIEW_COLUMNS = (User.id, User.email, User.full_name, User.role, User.is_active, User.created_at)


@dataclass(frozen=True)
class _Scope:
    """What a listing is limited to besides its text: a role, a state, a page cursor."""

    role: str | None
    active: bool | None
    after_email: str | None

    @property
    def shape(self) -> _Shape:
        return _Shape(self.role is not None, self.active, self.after_email is not None)

    def params(self) -> dict[str, object]:
        return {"role": self.role, "after_email": self.after_email}


@dataclass(frozen=True)
class _Shape:
    """Which of a scope's conditions a search has. Its statements are built once per
    shape (functools.cache), the values bound at each search: building and keying them
    per call cost more than running them (docs/BENCH_SCALE.md)."""

    role: bool
    active: bool | None
    after: bool

    def on(self, columns: ColumnCollection) -> list[ColumnElement[bool]]:
        """The conditions on `columns` (the table's, or a subquery's of it)."""
        conditions = []
        if self.role:
            conditions.append(columns.role == bindparam("role"))
        if self.active is not None:
            conditions.append(columns.is_active.is_(self.active))
        if self.after:
            conditions.append(columns.email > bindparam("after_email"))
        return conditions


def _names_match(columns: ColumnCollection) -> ColumnElement[bool]:
    """The e-mail or full name is LIKE the bound `pattern` (lower-cased; the trigram
    indexes')."""
    pattern = bindparam("pattern")
    return or_(
        columns.email.like(pattern, escape="\\"),
        func.lower(columns.full_name).like(pattern, escape="\\"),
    )


_ACCOUNTS = User.__table__.c


@functools.cache
def _listed(shape: _Shape) -> Select[Any]:
    query = select(_ACCOUNTS.id, _ACCOUNTS.email).where(*shape.on(_ACCOUNTS))
    return query.order_by(_ACCOUNTS.email).limit(bindparam("limit"))


@functools.cache
def _walk(shape: _Shape) -> Select[Any]:
    accounts = _ACCOUNTS
    walk = select(
        accounts.id,
        accounts.email,
        accounts.full_name,
        accounts.role,
        accounts.is_active,
        func.row_number().over(order_by=accounts.email).label("read"),
    )
    if shape.after:
        walk = walk.where(accounts.email > bindparam("after_email"))
    head = walk.order_by(accounts.email).limit(bindparam("read_limit")).subquery()
    hit = and_(*shape.on(head.c), _names_match(head.c))
    return (
        select(head.c.id, head.c.email, hit.label("hit"), head.c.read)
        .where(hit | (head.c.read == bindparam("read_limit")))
        .order_by(head.c.email)
        .limit(bindparam("limit"))
    )


@functools.cache
def _name_matches(shape: _Shape) -> Select[Any]:
    # OFFSET 0 keeps the planner from walking the e-mail order again for the LIMIT.
    matches = (
        select(_ACCOUNTS.id, _ACCOUNTS.email)
        .where(*shape.on(_ACCOUNTS), _names_match(_ACCOUNTS))
        .offset(0)
        .subquery()
    )
    query = select(matches.c.id, matches.c.email).order_by(matches.c.email)
    return query.limit(bindparam("limit"))


_ENROLLED = func.lower(StudentProfile.enrollment_id).like(bindparam("pattern"), escape="\\")
# Up to one more than the read limit: whether there are more.
_ENROLLED_FEW = select(StudentProfile.user_id).where(_ENROLLED).limit(bindparam("read_past"))


@functools.cache
def _enrolled_few(shape: _Shape) -> Select[Any]:
    """How many profiles match (up to the read limit and one), and the first `limit`
    matching accounts in e-mail order, each looked up by its key (LIMIT 1 keeps the
    planner from turning the lookups into a scan of every account): one statement, one
    read of the trigram index. One row with `matched` and no account when none is left."""
    accounts = _ACCOUNTS
    few = _ENROLLED_FEW.cte("few")
    account = (
        select(accounts.id, accounts.email)
        .where(accounts.id == few.c.user_id, *shape.on(accounts))
        .limit(1)
        .lateral()
    )
    page = (
        select(account.c.id, account.c.email)
        .select_from(few)
        .join(account, true())
        .order_by(account.c.email)
        .limit(bindparam("limit"))
        .lateral("page")
    )
    matched = select(func.count().label("matched")).select_from(few).subquery("matched")
    return (
        select(matched.c.matched, page.c.id, page.c.email)
        .select_from(matched)
        .outerjoin(page, true())
        .order_by(page.c.email)
    )


@functools.cache
def _enrolled_many(shape: _Shape) -> Select[Any]:
    """The first `limit` matching accounts, walking the e-mail order (when many match)."""
    query = (
        select(_ACCOUNTS.id, _ACCOUNTS.email)
        .join(StudentProfile, StudentProfile.user_id == _ACCOUNTS.id)
        .where(*shape.on(_ACCOUNTS), _ENROLLED)
    )
    return query.order_by(_ACCOUNTS.email).limit(bindparam("limit"))


_VIEWS = (
    select(*_VIEW_COLUMNS, StudentProfile.enrollment_id)
    .outerjoin(StudentProfile, StudentProfile.user_id == User.id)
    .where(User.id.in_(bindparam("ids", expanding=True)))
)


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
    ) -> list[AccountView]:
        """Accounts in e-mail order after `after_email`, of a role, in an active state,
        whose e-mail, full name or enrollment id contains `text` (case-insensitive).

        The account's own columns and the enrollment id are searched apart and merged:
        one query OR-ing across the two tables leaves the planner no index for the OR."""
        scope = _Scope(role, active, after_email)
        params = {**scope.params(), "limit": limit}
        if not text:
            return self._views(self._session.execute(_listed(scope.shape), params).all())
        params["pattern"] = contains_pattern(text)
        params["read_limit"], params["read_past"] = SEARCH_READ_LIMIT, SEARCH_READ_LIMIT + 1
        own = self._own_matches(scope, params)
        enrolled = self._enrolled_matches(scope, params)
        merged = dict(heapq.merge(own, enrolled, key=lambda row: row[1]))
        return self._views(list(merged.items())[:limit])

    def _own_matches(self, scope: _Scope, params: dict[str, object]) -> list[Row]:
        """The first `limit` (id, e-mail) in e-mail order whose e-mail or name matches.

        Matches are often clustered in e-mail order (an e-mail begins with a first name:
        every `xavier` sorts near the end), which the planner cannot know: walking the
        e-mail index to the first matches then reads nearly every account. So the walk
        (index-only, migration 0015) reads at most SEARCH_READ_LIMIT accounts, counted
        before the scope, which may have no index (deactivated accounts); if they hold
        too few matches, the matches are taken from the trigram indexes and sorted (when
        many match, the walk has answered)."""
        walked = self._session.execute(_walk(scope.shape), params).all()
        hits = [(row.id, row.email) for row in walked if row.hit]
        read_everything = not any(row.read == SEARCH_READ_LIMIT for row in walked)
        if len(hits) == params["limit"] or read_everything:
            return hits
        rows = self._session.execute(_name_matches(scope.shape), params)
        return [(row.id, row.email) for row in rows]

    def _enrolled_matches(self, scope: _Scope, params: dict[str, object]) -> list[Row]:
        """The first `limit` (id, e-mail) in e-mail order of students whose enrollment id
        matches.

        The other way round from the names: enrollment ids do not follow e-mail order,
        and each account walked would cost a profile lookup. So up to SEARCH_READ_LIMIT
        matching profiles are taken from the trigram index first; only when there are
        more (so many that the first `limit` come soon) is the e-mail order walked."""
        if scope.role not in (None, "student"):
            return []  # only students have an enrollment id
        few = self._session.execute(_enrolled_few(scope.shape), params).all()
        if few[0].matched <= SEARCH_READ_LIMIT:
            return [(row.id, row.email) for row in few if row.id is not None]
        rows = self._session.execute(_enrolled_many(scope.shape), params)
        return [(row.id, row.email) for row in rows]

    def _views(self, ordered: Sequence[Row]) -> list[AccountView]:
        """The accounts of (id, e-mail) rows as listed, in the rows' order: read as plain
        rows, not ORM objects (loading 51 objects was a fifth of a ListUsers call)."""
        ids = [row[0] for row in ordered]
        by_id = {
            row.id: AccountView(
                row.id,
                row.email,
                row.full_name,
                Role(row.role),
                row.is_active,
                row.created_at,
                row.enrollment_id,
            )
            for row in self._session.execute(_VIEWS, {"ids": ids})
        }
        return [by_id[user_id] for user_id in ids]

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
