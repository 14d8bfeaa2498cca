"""The unit of work on SQLAlchemy: one session, one transaction, rolled back unless the
use case commits it; the repositories share the session. Database outages leave it as
the domain's Unavailable, constraint violations at commit as Conflict.

It implements services.unit_of_work.UnitOfWork by its shape, without importing it:
repositories sit below the services, and bootstrap.py wires the two together."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from veritas_grpc.domain.errors import Unavailable
from veritas_grpc.repositories.allowances import AllowanceRepository
from veritas_grpc.repositories.analyses import AnalysisRepository
from veritas_grpc.repositories.analysis_jobs import AnalysisJobRepository
from veritas_grpc.repositories.attempts import AttemptRepository
from veritas_grpc.repositories.audit import AuditRepository
from veritas_grpc.repositories.auth_tokens import AuthTokenRepository
from veritas_grpc.repositories.conflicts import conflict_on_violation
from veritas_grpc.repositories.data_subjects import DataSubjectRepository
from veritas_grpc.repositories.enrolment import EnrolmentRepository
from veritas_grpc.repositories.events import EventRepository
from veritas_grpc.repositories.exams import ExamRepository
from veritas_grpc.repositories.oversight import OversightRepository
from veritas_grpc.repositories.partitions import PartitionRepository
from veritas_grpc.repositories.set_password_tokens import SetPasswordTokenRepository
from veritas_grpc.repositories.student_stats import StudentStatsRepository
from veritas_grpc.repositories.users import UserRepository


def is_outage(error: BaseException) -> bool:
    """The database could not be reached (as opposed to refusing a statement)."""
    if isinstance(error, OperationalError | PoolTimeoutError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


# SQLSTATE of a transaction PostgreSQL aborted for another's sake: a deadlock victim or
# a serialization failure. Retrying helps, as with an outage, but the database is up.
_CONFLICTS = frozenset({"40P01", "40001"})


def _why_unavailable(error: BaseException) -> str:
    code = getattr(getattr(error, "orig", None), "pgcode", None)
    if code in _CONFLICTS:
        return "the transaction conflicted with a concurrent one; retry"
    return "the database is unavailable; retry later"


class SqlAlchemyUnitOfWork:
    users: UserRepository
    tokens: AuthTokenRepository
    audit: AuditRepository
    exams: ExamRepository
    attempts: AttemptRepository
    student_stats: StudentStatsRepository
    events: EventRepository
    partitions: PartitionRepository
    analyses: AnalysisRepository
    data_subjects: DataSubjectRepository
    oversight: OversightRepository
    set_password_tokens: SetPasswordTokenRepository
    enrolment: EnrolmentRepository
    analysis_jobs: AnalysisJobRepository
    allowances: AllowanceRepository

    def __init__(self, session_factory: sessionmaker[Session], on_primary: bool = True) -> None:
        self._session_factory = session_factory
        self._on_primary = on_primary
        self._snapshot = False
        self.session: Session | None = None

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        self.session = self._session_factory()
        self.users = UserRepository(self.session)
        self.tokens = AuthTokenRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.exams = ExamRepository(self.session)
        self.attempts = AttemptRepository(self.session)
        self.student_stats = StudentStatsRepository(self.session)
        self.events = EventRepository(self.session)
        self.partitions = PartitionRepository(self.session)
        self.analyses = AnalysisRepository(self.session)
        self.data_subjects = DataSubjectRepository(self.session)
        self.oversight = OversightRepository(self.session)
        self.set_password_tokens = SetPasswordTokenRepository(self.session)
        self.enrolment = EnrolmentRepository(self.session)
        self.analysis_jobs = AnalysisJobRepository(self.session)
        self.allowances = AllowanceRepository(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.session is not None
        # close() rolls back whatever was not committed and detaches loaded objects
        # without expiring them, so views built from them stay readable. That rollback
        # meets a connection the database dropped since the last statement as an
        # error of its own: an outage like any other.
        try:
            self.session.close()
        except Exception as closing:
            if not is_outage(closing):
                raise
            exc = exc or closing
        finally:
            self.session = None
        if exc is not None and is_outage(exc):
            raise Unavailable(_why_unavailable(exc)) from exc

    def snapshot(self) -> None:
        assert self.session is not None
        self.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        self._snapshot = True

    def audits_here(self) -> bool:
        return self._on_primary and not self._snapshot

    def commit(self) -> None:
        assert self.session is not None
        with conflict_on_violation("the transaction broke a constraint at commit"):
            self.audit.seal()  # last: the chain's head stays locked until the commit
            self.session.commit()

    def rollback(self) -> None:
        assert self.session is not None
        self.audit.discard()
        self.session.rollback()
