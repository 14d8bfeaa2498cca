"""The deferred token check on the primary's session factory
(repositories.auth_tokens.check_tokens_at_begin): the first statement of the call's
first transaction, whatever its isolation, made once; a refusal raises there and
sticks; outside a call, or once made, it sends nothing."""

from __future__ import annotations

import contextvars
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.domain.errors import Unauthenticated
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.repositories.auth_tokens import _ACCESS_IS_VALID, check_tokens_at_begin
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.services import token_checks

TOKEN_CHECK = _ACCESS_IS_VALID.name  # the prepared statement's


@pytest.fixture(scope="module")
def world(fresh_database):
    url = fresh_database("token_check")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    check_tokens_at_begin(factory, token_checks.current)
    user = _user(factory, "t@uni.edu", active=True)
    session = _session_of(factory, user)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _k, sql, *_: sent.append(sql))
    yield factory, user, session, sent
    engine.dispose()


def _user(factory, email: str, active: bool) -> uuid.UUID:
    with factory.begin() as session:
        return session.execute(
            text(
                "INSERT INTO users (email, password_hash, full_name, role, is_active) "
                "VALUES (:e, '!', 'T', 'teacher', :a) RETURNING id"
            ),
            {"e": email, "a": active},
        ).scalar_one()


def _session_of(factory, user: uuid.UUID, revoked: bool = False) -> uuid.UUID:
    with factory.begin() as session:
        return session.execute(
            text(
                "INSERT INTO auth_sessions (user_id, expires_at, revoked_at) "
                "VALUES (:u, now() + interval '1 hour', "
                "CASE WHEN :r THEN now() END) RETURNING id"
            ),
            {"u": user, "r": revoked},
        ).scalar_one()


def _revoke(factory, jti: str) -> None:
    with factory.begin() as session:
        session.execute(
            text(
                "INSERT INTO revoked_access_tokens (jti, expires_at) "
                "VALUES (:j, now() + interval '1 hour')"
            ),
            {"j": jti},
        )


def _principal(user, session, role: Role = Role.TEACHER) -> Principal:
    expires = datetime.now(UTC) + timedelta(hours=1)
    return Principal(user, role, uuid.uuid4().hex, session, expires)


def _in_a_call(work, principal: Principal | None):
    """Run `work` as a call's worker thread would: in a context of its own."""

    def call():
        check = token_checks.defer(principal) if principal else None
        return work(), check

    return contextvars.copy_context().run(call)


def test_the_check_is_the_first_statement_of_a_snapshot_and_leaves_its_isolation(world):
    factory, user, session, sent = world
    sent.clear()

    def snapshot_read():
        with SqlAlchemyUnitOfWork(factory) as uow:
            uow.snapshot()
            first = uow.session.execute(text("SHOW transaction_isolation")).scalar_one()
            again = uow.session.execute(text("SELECT 1")).scalar_one()
            return first, again

    (isolation, _), check = _in_a_call(snapshot_read, _principal(user, session))
    assert isolation == "repeatable read"
    assert check.done and not check.refused
    assert TOKEN_CHECK in sent[0]  # its PREPARE on a new connection, else its EXECUTE
    assert sum(s.startswith(f"EXECUTE {TOKEN_CHECK}") for s in sent) == 1


def test_a_second_transaction_of_the_call_is_not_checked_again(world):
    factory, user, session, sent = world
    sent.clear()

    def two_units():
        for _ in range(2):
            with SqlAlchemyUnitOfWork(factory) as uow:
                uow.session.execute(text("SELECT 1"))

    _in_a_call(two_units, _principal(user, session))
    assert sum(s.startswith(f"EXECUTE {TOKEN_CHECK}") for s in sent) == 1


@pytest.mark.parametrize(
    "change", ["revoked session", "other role", "revoked token", "deactivated account"]
)
def test_a_refused_token_raises_before_the_call_reads_anything(world, change):
    factory, user, session, sent = world
    principal = _principal(user, session, Role.STUDENT if change == "other role" else Role.TEACHER)
    if change == "deactivated account":
        user = _user(factory, "deactivated@uni.edu", active=False)
        principal = _principal(user, _session_of(factory, user))
    if change == "revoked session":
        principal = _principal(user, _session_of(factory, user, revoked=True))
    if change == "revoked token":
        _revoke(factory, principal.token_id)
    sent.clear()
    reached: list[str] = []

    def read():
        with SqlAlchemyUnitOfWork(factory) as uow:
            uow.session.execute(text("SELECT 'the call read'"))
            reached.append("read")

    with pytest.raises(Unauthenticated):
        _in_a_call(read, principal)
    assert reached == []
    assert not any("the call read" in s for s in sent)


def test_a_refusal_caught_by_the_call_still_writes_nothing(world):
    """A use case that swallowed the refusal and went on: its later transactions and
    commits are refused too, and every connection goes back to the pool."""
    factory, user, session, _ = world
    revoked = _principal(user, session)
    _revoke(factory, revoked.token_id)
    attempts: list[str] = []

    def insert(uow) -> None:
        uow.session.execute(text("INSERT INTO teacher_profiles (user_id) VALUES (:u)"), {"u": user})
        uow.commit()

    def swallowing():
        with SqlAlchemyUnitOfWork(factory) as uow:  # going on in the same transaction
            try:
                uow.session.execute(text("SELECT 1"))
            except Unauthenticated:
                attempts.append("refused")
            try:
                insert(uow)
            except Unauthenticated:
                attempts.append("commit refused")
        try:  # and in another
            with SqlAlchemyUnitOfWork(factory) as uow:
                insert(uow)
        except Unauthenticated:
            attempts.append("write refused")

    _in_a_call(swallowing, revoked)
    assert attempts == ["refused", "commit refused", "write refused"]
    with factory() as check:
        written = check.execute(
            text("SELECT count(*) FROM teacher_profiles WHERE user_id = :u"), {"u": user}
        ).scalar_one()
    assert written == 0
    assert factory.kw["bind"].pool.checkedout() == 0


def test_outside_a_call_nothing_is_checked(world):
    factory, _, _, sent = world
    sent.clear()

    def read():
        with SqlAlchemyUnitOfWork(factory) as uow:
            uow.session.execute(text("SELECT 1"))

    _in_a_call(read, None)
    assert not any(TOKEN_CHECK in s for s in sent)
