"""The composition root: the one place that wires engine, services, servicers and
interceptors together. Nothing else creates an engine or a service."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import grpc
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from veritas.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    analysis_pb2,
    analysis_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    student_pb2,
    student_pb2_grpc,
    teacher_pb2,
    teacher_pb2_grpc,
)

from veritas_grpc.adapters.alert_listener import AlertBroker, AlertListener
from veritas_grpc.adapters.alert_store import AlertStore
from veritas_grpc.adapters.event_writer import EventWriter
from veritas_grpc.adapters.job_wakeups import JobBell
from veritas_grpc.adapters.metrics import Metrics
from veritas_grpc.adapters.replica import ReplicaRouter
from veritas_grpc.api.admin import AuditTrailServicer, admin_servicer
from veritas_grpc.api.admin_data_subjects import DataSubjectServicer
from veritas_grpc.api.admin_enrolment import EnrolmentServicer
from veritas_grpc.api.admin_oversight import OversightServicer
from veritas_grpc.api.admin_users import UserAdminServicer
from veritas_grpc.api.analysis import AnalysisServicer
from veritas_grpc.api.auth import AuthServicer
from veritas_grpc.api.monitoring import MonitoringServicer
from veritas_grpc.api.student import StudentServicer
from veritas_grpc.api.teacher import TeacherServicer
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.config import Settings
from veritas_grpc.db.engine import make_engine, make_session_factory
from veritas_grpc.db.models import JOBS_CHANNEL
from veritas_grpc.db.models.auth import SESSION_CHANNEL
from veritas_grpc.domain.analysis_jobs import RetryPolicy
from veritas_grpc.domain.audit_chain import ChainKeys
from veritas_grpc.domain.events import EventWindow
from veritas_grpc.domain.readiness import EventSpan
from veritas_grpc.health import HealthMonitor
from veritas_grpc.interceptors.authentication import AuthenticationInterceptor, OpenStreams
from veritas_grpc.interceptors.authorization import AuthorizationInterceptor
from veritas_grpc.interceptors.errors import ErrorInterceptor
from veritas_grpc.interceptors.metrics import MetricsInterceptor
from veritas_grpc.interceptors.read_source import (
    REPLICA_METHODS,
    ReadSourceInterceptor,
    replica_allowed,
)
from veritas_grpc.interceptors.request_checks import RequestCheckInterceptor
from veritas_grpc.interceptors.request_log import RequestLogInterceptor
from veritas_grpc.repositories.audit import use_chain_keys
from veritas_grpc.repositories.auth_tokens import check_tokens_at_begin
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.security.passwords import PasswordHasher
from veritas_grpc.security.tokens import AccessTokenCodec
from veritas_grpc.services import token_checks
from veritas_grpc.services.accounts import AccountService
from veritas_grpc.services.allowances import AllowanceService
from veritas_grpc.services.analysis import AnalysisService
from veritas_grpc.services.analysis_queue import AnalysisQueue
from veritas_grpc.services.attempts import AttemptService
from veritas_grpc.services.audit_trail import AuditTrail
from veritas_grpc.services.auth import AuthService, utc_now
from veritas_grpc.services.dashboards import DashboardService
from veritas_grpc.services.data_subjects import DataSubjects
from veritas_grpc.services.enrolment import EnrolmentService
from veritas_grpc.services.exams import ExamService
from veritas_grpc.services.ingestion import EventIngestion
from veritas_grpc.services.job_claims import JobClaims
from veritas_grpc.services.monitoring import MonitoringService
from veritas_grpc.services.oversight import Oversight
from veritas_grpc.services.paging import page_token_key, use_page_token_key
from veritas_grpc.services.partition_upkeep import EventArchive, use_archive_dir
from veritas_grpc.services.refusal_audit import RefusalAudit
from veritas_grpc.services.unit_of_work import UnitOfWork
from veritas_grpc.services.user_admin import UserAdministration
from veritas_grpc.services.watching import AlertWatching

# Every veritas.v1 service the server implements, by full name (for health and reflection).
SERVICE_NAMES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    student_pb2.DESCRIPTOR.services_by_name["StudentService"].full_name,
    teacher_pb2.DESCRIPTOR.services_by_name["TeacherService"].full_name,
    monitoring_pb2.DESCRIPTOR.services_by_name["MonitoringService"].full_name,
    analysis_pb2.DESCRIPTOR.services_by_name["AnalysisService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


@dataclass
class Runners:
    """Separate pools, so one kind of work cannot starve another: a flood of sign-ins
    (bcrypt, ~0.2 s of CPU each) queues on its own pool and is refused past a limit,
    while other calls keep their database threads, and the health probe its own."""

    database: BlockingRunner
    passwords: BlockingRunner
    health: BlockingRunner
    # The event writers' transactions, apart: agents' token checks and lookups on the
    # database pool never queue behind a large batch, nor the batches behind them.
    ingest: BlockingRunner

    def shutdown(self) -> None:
        for runner in (self.database, self.passwords, self.health, self.ingest):
            runner.shutdown()


def build_runners(settings: Settings, metrics: Metrics | None = None) -> Runners:
    def waits(pool: str) -> Callable[[], None] | None:
        return metrics.waiter(pool) if metrics is not None else None

    return Runners(
        database=BlockingRunner("veritas-db", settings.worker_threads, on_wait=waits("database")),
        passwords=BlockingRunner(
            "veritas-pw", settings.password_threads, settings.password_queue_limit
        ),
        health=BlockingRunner("veritas-health", 1),
        ingest=BlockingRunner("veritas-ingest", settings.ingest_writers, on_wait=waits("ingest")),
    )


def build_metrics(settings: Settings) -> Metrics:
    """The server's metrics: in memory with one process, in files shared with the other
    processes with several (README, "Metrics")."""
    return Metrics(settings.metrics_dir)


@dataclass
class Services:
    engine: Engine
    accounts: AccountService
    auth: AuthService
    exams: ExamService
    attempts: AttemptService
    dashboards: DashboardService
    monitoring: MonitoringService
    analysis: AnalysisService
    audit_trail: AuditTrail
    user_admin: UserAdministration
    # The authenticated streams open in this process, re-checked at once when a session
    # notice (SESSION_CHANNEL) names their account.
    open_streams: OpenStreams
    data_subjects: DataSubjects
    event_archive: EventArchive
    oversight: Oversight
    enrolment: EnrolmentService
    # Refused requests for others' resources, noted by the error interceptor and
    # written by a maintenance task.
    refusals: RefusalAudit
    analysis_queue: AnalysisQueue
    # Wakes waiting claims when a job may be claimable (rung from the LISTEN thread).
    job_bell: JobBell
    # What the server counts (served on VERITAS_METRICS_LISTEN, if set).
    metrics: Metrics
    allowances: AllowanceService
    # The read replica's router (VERITAS_DATABASE_READ_URL), probed by the server.
    replica: ReplicaRouter | None = None

    def close(self) -> None:
        self.engine.dispose()
        if self.replica is not None:
            self.replica.dispose()


def replica_router(
    settings: Settings, primary: Engine, primary_sessions: sessionmaker[Session], metrics: Metrics
) -> ReplicaRouter | None:
    if not settings.database_read_url:
        return None
    replica = make_engine(settings.database_read_url, pool_size=settings.db_pool_size)
    return ReplicaRouter(
        primary_sessions,
        primary,
        make_session_factory(replica),
        replica,
        settings.replica_max_lag_seconds,
        on_read=metrics.read_from,
        on_state=lambda state: metrics.replica_probed(state.fresh, state.staleness_seconds),
    )


def configure_page_tokens(settings: Settings) -> None:
    """Every process sharing the secret signs and accepts the same page tokens."""
    secret = settings.page_token_secret or settings.jwt_secret
    # Commands that issue no tokens run without a secret; they list no pages either.
    if secret:
        use_page_token_key(page_token_key(secret))


def audit_chain_keys(settings: Settings) -> ChainKeys | None:
    secrets = settings.audit_secrets or ((settings.jwt_secret,) if settings.jwt_secret else ())
    return ChainKeys.from_secrets(*secrets) if secrets else None


def configure_audit_chain(settings: Settings) -> None:
    """Every process sealing with the same secret extends one verifiable chain."""
    # Without any secret (a command run with neither), nothing can be audited: such a
    # command fails at its first audited write, saying so, instead of writing rows that
    # no server could verify.
    keys = audit_chain_keys(settings)
    if keys is not None:
        use_chain_keys(keys)


def build_services(
    settings: Settings, database_url: str, metrics: Metrics | None = None
) -> Services:
    """Commands other than the server pass no metrics: theirs are counted in memory and
    never served."""
    configure_page_tokens(settings)
    configure_audit_chain(settings)
    use_archive_dir(settings.event_archive_dir)
    metrics = metrics or Metrics()
    engine = make_engine(database_url, pool_size=settings.db_pool_size + settings.ingest_writers)
    metrics.watch_pool(engine)
    session_factory = make_session_factory(engine)
    # A unary call's token check is the first statement of its first transaction on the
    # primary (services/token_checks.py).
    check_tokens_at_begin(session_factory, token_checks.current)
    replica = replica_router(settings, engine, session_factory, metrics)

    def uow_factory() -> UnitOfWork:
        return SqlAlchemyUnitOfWork(session_factory)

    def read_uow_factory() -> UnitOfWork:
        """For the reads of RPCs whose contract says READ_SOURCE_REPLICA: the replica
        while it is fresh (adapters/replica.py), else the primary."""
        if replica is None or not replica_allowed():
            metrics.read_from("primary")
            return SqlAlchemyUnitOfWork(session_factory)
        reads = replica.reads()
        return SqlAlchemyUnitOfWork(reads, on_primary=reads is session_factory)

    hasher = PasswordHasher(settings.bcrypt_rounds)
    threshold = Decimal(str(settings.flag_integrity_threshold))
    codec = AccessTokenCodec(
        settings.jwt_secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.access_token_ttl_seconds,
    )
    analysis_queue = AnalysisQueue(
        uow_factory,
        utc_now,
        RetryPolicy(settings.analysis_max_tries, settings.analysis_retry_base_seconds),
    )
    metrics.read_queue(analysis_queue.summary)
    return Services(
        engine=engine,
        accounts=AccountService(uow_factory, hasher, settings),
        auth=AuthService(uow_factory, hasher, codec, settings, observer=metrics),
        exams=ExamService(uow_factory, utc_now),
        attempts=AttemptService(
            uow_factory,
            utc_now,
            flag_threshold=threshold,
            grace=timedelta(seconds=settings.attempt_grace_seconds),
            event_span=EventSpan(
                max_age=timedelta(seconds=settings.event_max_age_seconds),
                max_skew=timedelta(seconds=settings.event_max_skew_seconds),
                late_grace=timedelta(seconds=settings.event_late_grace_seconds),
            ),
        ),
        dashboards=DashboardService(uow_factory, reads=read_uow_factory),
        monitoring=MonitoringService(
            uow_factory,
            utc_now,
            timedelta(seconds=settings.event_late_grace_seconds),
            reads=read_uow_factory,
        ),
        analysis=AnalysisService(uow_factory, utc_now, threshold, reads=read_uow_factory),
        audit_trail=AuditTrail(uow_factory, audit_chain_keys(settings)),
        user_admin=UserAdministration(uow_factory, settings),
        open_streams=OpenStreams(),
        data_subjects=DataSubjects(uow_factory, audit_chain_keys(settings), utc_now),
        event_archive=EventArchive(uow_factory, utc_now),
        oversight=Oversight(
            uow_factory,
            utc_now,
            refresh=timedelta(seconds=settings.system_stats_refresh_seconds),
            event_max_age=timedelta(seconds=settings.event_max_age_seconds),
            reads=read_uow_factory,
        ),
        enrolment=EnrolmentService(uow_factory, hasher, settings),
        refusals=RefusalAudit(uow_factory),
        analysis_queue=analysis_queue,
        job_bell=JobBell(),
        metrics=metrics,
        replica=replica,
        allowances=AllowanceService(
            uow_factory,
            utc_now,
            threshold,
            grace=timedelta(seconds=settings.attempt_grace_seconds),
        ),
    )


def interceptors(services: Services, runners: Runners) -> list[grpc.aio.ServerInterceptor]:
    # The first is outermost: the log sees the final status, the error mapper sees
    # authentication and authorization failures too. The request checks come last: their
    # deserializer is the one grpc calls, and what they refuse is raised inside the chain.
    # The metrics, inside the log and outside the mapper, count the status it logs.
    return [
        RequestLogInterceptor(),
        MetricsInterceptor(services.metrics),
        ErrorInterceptor(services.refusals.note),
        AuthenticationInterceptor(
            services.auth,
            runners.database,
            services.open_streams,
            checked_first=REPLICA_METHODS if services.replica is not None else frozenset(),
        ),
        AuthorizationInterceptor(),
        ReadSourceInterceptor(),
        RequestCheckInterceptor(),
    ]


@dataclass
class Ingestion:
    """The ingestion machinery that lives on the server's event loop."""

    writer: EventWriter
    broker: AlertBroker
    listener: AlertListener

    async def stop(self) -> None:
        await self.writer.stop()
        self.listener.stop()


def start_ingestion(
    settings: Settings, services: Services, runners: Runners, database_url: str
) -> Ingestion:
    """Start the event writers and the alert listener on the running event loop."""
    writer = EventWriter(
        services.monitoring.store,
        runners.ingest,
        writers=settings.ingest_writers,
        max_rows=settings.ingest_batch_rows,
        metrics=services.metrics,
    )
    writer.start()
    broker = AlertBroker(AlertStore(services.engine), runners.database)
    listener = AlertListener(
        database_url,
        broker,
        {SESSION_CHANNEL: services.open_streams, JOBS_CHANNEL: services.job_bell},
    )
    listener.start(asyncio.get_running_loop())
    return Ingestion(writer, broker, listener)


def event_window(settings: Settings) -> EventWindow:
    return EventWindow(
        max_age=timedelta(seconds=settings.event_max_age_seconds),
        max_skew=timedelta(seconds=settings.event_max_skew_seconds),
    )


def add_servicers(
    server: grpc.aio.Server,
    settings: Settings,
    services: Services,
    runners: Runners,
    ingestion: Ingestion,
) -> None:
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(
            services.auth,
            services.accounts,
            runners.database,
            runners.passwords,
            settings.trusted_proxies,
            services.enrolment,
        ),
        server,
    )
    student_pb2_grpc.add_StudentServiceServicer_to_server(
        StudentServicer(services.attempts, services.dashboards, runners.database),
        server,
    )
    teacher_pb2_grpc.add_TeacherServiceServicer_to_server(
        TeacherServicer(
            services.exams,
            services.attempts,
            services.dashboards,
            services.monitoring,
            services.analysis,
            runners.database,
            services.allowances,
        ),
        server,
    )
    analysis_pb2_grpc.add_AnalysisServiceServicer_to_server(
        AnalysisServicer(
            services.analysis,
            services.analysis_queue,
            JobClaims(services.analysis_queue, services.job_bell, runners.database, utc_now),
            runners.database,
        ),
        server,
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        admin_servicer(
            AuditTrailServicer(services.audit_trail, runners.database),
            UserAdminServicer(services.user_admin, runners.database),
            DataSubjectServicer(services.data_subjects, runners.database),
            OversightServicer(services.oversight, runners.database),
            EnrolmentServicer(services.enrolment, runners.database),
        ),
        server,
    )
    monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server(
        MonitoringServicer(
            EventIngestion(
                services.monitoring,
                ingestion.writer,
                runners.database,
                utc_now,
                event_window(settings),
            ),
            AlertWatching(
                services.monitoring,
                ingestion.broker,
                runners.database,
                settings.watch_heartbeat_seconds,
                utc_now,
            ),
            services.monitoring,
            runners.database,
            services.metrics,
        ),
        server,
    )


def health_monitor(settings: Settings, services: Services, runners: Runners) -> HealthMonitor:
    return HealthMonitor(
        services.engine,
        runners.health,
        SERVICE_NAMES,
        settings.health_check_interval_seconds,
        services.metrics.health_changed,
    )
