"""Unit of work: one transaction, rolled back unless the use case commits it."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from veritas_grpc.repositories.audit import AuditRepository
from veritas_grpc.repositories.auth_tokens import AuthTokenRepository
from veritas_grpc.repositories.users import UserRepository


class UnitOfWork:
    users: UserRepository
    tokens: AuthTokenRepository
    audit: AuditRepository

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self.session: Session | None = None

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        self.users = UserRepository(self.session)
        self.tokens = AuthTokenRepository(self.session)
        self.audit = AuditRepository(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.session is not None
        # close() rolls back whatever was not committed and detaches loaded objects
        # without expiring them, so views built from them stay readable.
        self.session.close()
        self.session = None

    def commit(self) -> None:
        assert self.session is not None
        self.session.commit()


UnitOfWorkFactory = Callable[[], UnitOfWork]
